// Maps a JSON message to the old demo's row, exactly as `plugins/json-row`
// does: `message_text` (the JSON text), `message_time` (the Kafka timestamp),
// `offset_id` and `partition_id`. Payloads that are empty, not UTF-8 or not
// JSON are rejected with the Rust mapper's reasons, word for word.

const PLUGIN = "js-json-row";
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

const COLUMNS = [
  { name: "message_text", kind: "text", nullable: false },
  { name: "message_time", kind: "timestamp", nullable: true },
  { name: "offset_id", kind: "integer", nullable: false },
  { name: "partition_id", kind: "integer", nullable: false },
];

// ignoreBOM keeps a leading byte order mark in the text, as Rust does.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Rejected extends Error {}

// Why `bytes` is not UTF-8, worded as Rust's `FromUtf8Error` (the first
// invalid sequence, with the length of its longest valid-looking prefix).
export function utf8Error(bytes) {
  for (let i = 0; i < bytes.length; ) {
    const first = bytes[i];
    if (first < 0x80) {
      i += 1;
      continue;
    }
    const width = first >= 0xc2 && first <= 0xdf ? 2 : first >= 0xe0 && first <= 0xef ? 3 : first >= 0xf0 && first <= 0xf4 ? 4 : 0;
    if (width === 0) return `invalid utf-8 sequence of 1 bytes from index ${i}`;
    // The allowed range of the second byte depends on the first.
    let [low, high] = [0x80, 0xbf];
    if (first === 0xe0) low = 0xa0;
    else if (first === 0xed) high = 0x9f;
    else if (first === 0xf0) low = 0x90;
    else if (first === 0xf4) high = 0x8f;
    for (let k = 1; k < width; k++) {
      if (i + k >= bytes.length) return `incomplete utf-8 byte sequence from index ${i}`;
      const b = bytes[i + k];
      const ok = k === 1 ? b >= low && b <= high : b >= 0x80 && b <= 0xbf;
      if (!ok) return `invalid utf-8 sequence of ${k} bytes from index ${i}`;
    }
    i += width;
  }
  return null;
}

// Why `bytes` (valid UTF-8) is not one JSON value, worded as serde_json's
// `ignore_value` words it (the Rust mapper's reason): the same grammar, the
// same error at the same position (lines from 1, columns in bytes).
export function jsonError(bytes) {
  let i = 0;
  const fail = (message, at) => {
    let start = at;
    while (start > 0 && bytes[start - 1] !== 0x0a) start--;
    let line = 1;
    for (let k = 0; k < start; k++) if (bytes[k] === 0x0a) line++;
    return new Rejected(`${message} at line ${line} column ${at - start}`);
  };
  // An error about a byte read sits at the reading position; one about a
  // byte looked at, one further (capped at the end).
  const error = (message) => fail(message, i);
  const peekError = (message) => fail(message, Math.min(bytes.length, i + 1));
  const isDigit = (b) => b !== undefined && b >= 0x30 && b <= 0x39;
  const whitespace = () => {
    while (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x09 || bytes[i] === 0x0d) i++;
    return bytes[i];
  };
  const ident = (rest) => {
    for (const expected of rest) {
      if (i >= bytes.length) throw error("EOF while parsing a value");
      if (bytes[i++] !== expected.charCodeAt(0)) throw error("expected ident");
    }
  };
  const exponent = () => {
    i++;
    if (bytes[i] === 0x2b || bytes[i] === 0x2d) i++;
    const b = bytes[i];
    if (b !== undefined) i++;
    if (!isDigit(b)) throw error("invalid number");
    while (isDigit(bytes[i])) i++;
  };
  const decimal = () => {
    i++;
    let digits = false;
    while (isDigit(bytes[i])) {
      i++;
      digits = true;
    }
    if (!digits) throw peekError("invalid number");
    if (bytes[i] === 0x65 || bytes[i] === 0x45) exponent();
  };
  const integer = () => {
    const b = bytes[i];
    if (b !== undefined) i++;
    if (b === 0x30) {
      if (isDigit(bytes[i])) throw peekError("invalid number");
    } else if (isDigit(b)) {
      while (isDigit(bytes[i])) i++;
    } else {
      throw error("invalid number");
    }
    if (bytes[i] === 0x2e) decimal();
    else if (bytes[i] === 0x65 || bytes[i] === 0x45) exponent();
  };
  const isHex = (b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  const string = () => {
    for (;;) {
      while (i < bytes.length && bytes[i] !== 0x22 && bytes[i] !== 0x5c && bytes[i] >= 0x20) i++;
      if (i === bytes.length) throw error("EOF while parsing a string");
      if (bytes[i] === 0x22) {
        i++;
        return;
      }
      if (bytes[i] !== 0x5c) throw error("control character (\\u0000-\\u001F) found while parsing a string");
      i++;
      if (i >= bytes.length) throw error("EOF while parsing a string");
      const escape = bytes[i++];
      if (escape === 0x75) {
        if (bytes.length - i < 4) {
          i = bytes.length;
          throw error("EOF while parsing a string");
        }
        i += 4;
        if (![1, 2, 3, 4].every((k) => isHex(bytes[i - k]))) throw error("invalid escape");
      } else if (!'"\\/bfnrt'.includes(String.fromCharCode(escape))) {
        throw error("invalid escape");
      }
    }
  };
  const OPEN_LIST = 0x5b, OPEN_OBJECT = 0x7b;
  // One value, nested lists and objects on an explicit stack of the
  // enclosing brackets.
  const value = () => {
    const stack = [];
    for (;;) {
      const b = whitespace();
      if (b === undefined) throw peekError("EOF while parsing a value");
      let frame = null;
      if (b === 0x6e) {
        i++;
        ident("ull");
      } else if (b === 0x74) {
        i++;
        ident("rue");
      } else if (b === 0x66) {
        i++;
        ident("alse");
      } else if (b === 0x2d) {
        i++;
        integer();
      } else if (isDigit(b)) {
        integer();
      } else if (b === 0x22) {
        i++;
        string();
      } else if (b === OPEN_LIST || b === OPEN_OBJECT) {
        i++;
        frame = b;
      } else {
        throw peekError("expected value");
      }

      let acceptComma = false;
      if (frame === null) {
        if (stack.length === 0) return;
        frame = stack.pop();
        acceptComma = true;
      }
      // After a value (or an opening bracket): a comma, or closings.
      for (;;) {
        const c = whitespace();
        if (c === 0x2c && acceptComma) {
          i++;
          break;
        }
        if (c === undefined) {
          throw peekError(frame === OPEN_LIST ? "EOF while parsing a list" : "EOF while parsing an object");
        }
        const closes = (c === 0x5d && frame === OPEN_LIST) || (c === 0x7d && frame === OPEN_OBJECT);
        if (!closes) {
          if (acceptComma) throw peekError(frame === OPEN_LIST ? "expected `,` or `]`" : "expected `,` or `}`");
          break;
        }
        i++;
        if (stack.length === 0) return;
        frame = stack.pop();
        acceptComma = true;
      }
      if (frame === OPEN_OBJECT) {
        let c = whitespace();
        if (c === undefined) throw peekError("EOF while parsing an object");
        if (c !== 0x22) throw peekError("key must be a string");
        i++;
        string();
        c = whitespace();
        if (c === undefined) throw peekError("EOF while parsing an object");
        if (c !== 0x3a) throw peekError("expected `:`");
        i++;
      }
      stack.push(frame);
    }
  };
  try {
    value();
    if (whitespace() !== undefined) throw peekError("trailing characters");
  } catch (e) {
    if (e instanceof Rejected) return e.message;
    throw e;
  }
  return null;
}

// The payload as text, or Rejected with the reason.
function validate(payload) {
  if (!payload || payload.length === 0) throw new Rejected("empty payload");
  let text;
  try {
    text = decoder.decode(payload);
  } catch {
    throw new Rejected(`payload is not valid UTF-8: ${utf8Error(payload)}`);
  }
  try {
    // Fast path for the usual, valid message: JSON.parse takes exactly JSON.
    JSON.parse(text);
  } catch {
    // Not JSON, or JSON too deep for JSON.parse: the strict checker decides
    // and words the reason.
    const reason = jsonError(payload);
    if (reason !== null) throw new Rejected(`payload is not JSON: ${reason}`);
  }
  return text;
}

function mapOne(message) {
  let text;
  try {
    text = validate(message.payload);
  } catch (e) {
    if (e instanceof Rejected) return { tag: "rejected", val: e.message };
    throw e;
  }
  let time = { tag: "null" };
  if (message.timestamp !== undefined && message.timestamp !== null) {
    let micros = BigInt(message.timestamp) * 1000n;
    micros = micros < I64_MIN ? I64_MIN : micros > I64_MAX ? I64_MAX : micros;
    time = { tag: "timestamp", val: micros };
  }
  return {
    tag: "rows",
    val: [{
      table: 0,
      rows: [[
        { tag: "text", val: text },
        time,
        { tag: "integer", val: BigInt(message.offset) },
        { tag: "integer", val: BigInt(message.partition) },
      ]],
    }],
  };
}

export const mapper = {
  configure(settings) {
    let parsed;
    try {
      parsed = JSON.parse(settings);
    } catch (e) {
      throw `${PLUGIN}: invalid settings: ${e.message}`;
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw `${PLUGIN}: invalid settings: expected a JSON object`;
    }
    // No settings yet; refuse unknown ones so a typo is not silently ignored.
    for (const key of Object.keys(parsed)) {
      throw `${PLUGIN}: unknown setting "${key}" (this mapper takes none)`;
    }
    // One table, unnamed: the sink's.
    return [{ name: undefined, columns: COLUMNS, key: undefined }];
  },

  mapBatch(messages) {
    return messages.map(mapOne);
  },
};
