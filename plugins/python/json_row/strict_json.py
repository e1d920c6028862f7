"""Why a payload is not JSON, worded as the Rust `json-row` words it.

The dead-letter table keeps the reason of each rejection, so the same payload
must give the same reason whichever language its mapper is written in. The
Rust mapper reports `serde_json` errors (`expected value at line 1 column 1`);
`json_error` follows `serde_json`'s `ignore_value` byte for byte: the same
grammar, the same error at the same position (lines from 1, columns in bytes
from the start of the line).
"""

_WHITESPACE = b" \n\t\r"
_HEX = b"0123456789abcdefABCDEF"


class _Syntax(Exception):
    def __init__(self, message: str, data: bytes, index: int):
        start = data.rfind(b"\n", 0, index) + 1
        line = 1 + data.count(b"\n", 0, start)
        super().__init__(f"{message} at line {line} column {index - start}")


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.i = 0

    def peek(self) -> int | None:
        return self.data[self.i] if self.i < len(self.data) else None

    def next(self) -> int | None:
        b = self.peek()
        if b is not None:
            self.i += 1
        return b

    # An error about the byte just read (`next`) sits at the reading position;
    # one about the byte looked at (`peek`) one further, capped at the end.
    def error(self, message: str) -> _Syntax:
        return _Syntax(message, self.data, self.i)

    def peek_error(self, message: str) -> _Syntax:
        return _Syntax(message, self.data, min(len(self.data), self.i + 1))

    def whitespace(self) -> int | None:
        while (b := self.peek()) is not None and b in _WHITESPACE:
            self.i += 1
        return b

    def ident(self, rest: bytes) -> None:
        for expected in rest:
            b = self.next()
            if b is None:
                raise self.error("EOF while parsing a value")
            if b != expected:
                raise self.error("expected ident")

    def digit(self, b: int | None) -> bool:
        return b is not None and 0x30 <= b <= 0x39

    def integer(self) -> None:
        b = self.next()
        if b == 0x30:  # only one leading zero
            if self.digit(self.peek()):
                raise self.peek_error("invalid number")
        elif self.digit(b) and b != 0x30:
            while self.digit(self.peek()):
                self.i += 1
        else:
            raise self.error("invalid number")
        b = self.peek()
        if b == ord("."):
            self.decimal()
        elif b in (ord("e"), ord("E")):
            self.exponent()

    def decimal(self) -> None:
        self.i += 1
        digits = False
        while self.digit(self.peek()):
            self.i += 1
            digits = True
        if not digits:
            raise self.peek_error("invalid number")
        if self.peek() in (ord("e"), ord("E")):
            self.exponent()

    def exponent(self) -> None:
        self.i += 1
        if self.peek() in (ord("+"), ord("-")):
            self.i += 1
        if not self.digit(self.next()):
            raise self.error("invalid number")
        while self.digit(self.peek()):
            self.i += 1

    def string(self) -> None:
        """The rest of a string whose opening quote was read."""
        data = self.data
        while True:
            while self.i < len(data) and data[self.i] not in b'"\\' and data[self.i] >= 0x20:
                self.i += 1
            if self.i == len(data):
                raise self.error("EOF while parsing a string")
            b = data[self.i]
            if b == ord('"'):
                self.i += 1
                return
            if b != ord("\\"):
                raise self.error("control character (\\u0000-\\u001F) found while parsing a string")
            self.i += 1
            escape = self.next()
            if escape is None:
                raise self.error("EOF while parsing a string")
            if escape == ord("u"):
                if len(data) - self.i < 4:
                    self.i = len(data)
                    raise self.error("EOF while parsing a string")
                self.i += 4
                if any(h not in _HEX for h in data[self.i - 4 : self.i]):
                    raise self.error("invalid escape")
            elif escape not in b'"\\/bfnrt':
                raise self.error("invalid escape")

    def value(self) -> None:
        """One value, nested arrays and objects on an explicit stack."""
        stack: list[int] = []  # the enclosing b"[" or b"{"
        while True:
            b = self.whitespace()
            if b is None:
                raise self.peek_error("EOF while parsing a value")
            frame = None
            if b == ord("n"):
                self.i += 1
                self.ident(b"ull")
            elif b == ord("t"):
                self.i += 1
                self.ident(b"rue")
            elif b == ord("f"):
                self.i += 1
                self.ident(b"alse")
            elif b == ord("-"):
                self.i += 1
                self.integer()
            elif self.digit(b):
                self.integer()
            elif b == ord('"'):
                self.i += 1
                self.string()
            elif b in b"[{":
                self.i += 1
                frame = b
            else:
                raise self.peek_error("expected value")

            if frame is not None:
                accept_comma = False
            elif stack:
                frame, accept_comma = stack.pop(), True
            else:
                return

            # After a value (or an opening bracket): a comma, or closings.
            while True:
                b = self.whitespace()
                if b == ord(",") and accept_comma:
                    self.i += 1
                    break
                if b is None:
                    what = "a list" if frame == ord("[") else "an object"
                    raise self.peek_error(f"EOF while parsing {what}")
                if not ((b == ord("]") and frame == ord("[")) or (b == ord("}") and frame == ord("{"))):
                    if accept_comma:
                        close = "]" if frame == ord("[") else "}"
                        raise self.peek_error(f"expected `,` or `{close}`")
                    break
                self.i += 1
                if not stack:
                    return
                frame, accept_comma = stack.pop(), True

            if frame == ord("{"):
                b = self.whitespace()
                if b is None:
                    raise self.peek_error("EOF while parsing an object")
                if b != ord('"'):
                    raise self.peek_error("key must be a string")
                self.i += 1
                self.string()
                b = self.whitespace()
                if b is None:
                    raise self.peek_error("EOF while parsing an object")
                if b != ord(":"):
                    raise self.peek_error("expected `:`")
                self.i += 1
            stack.append(frame)


def json_error(data: bytes) -> str | None:
    """None when `data` (valid UTF-8) is one JSON value, else why not."""
    reader = _Reader(data)
    try:
        reader.value()
        if reader.whitespace() is not None:
            raise reader.peek_error("trailing characters")
    except _Syntax as e:
        return str(e)
    return None


def utf8_error(e: UnicodeDecodeError) -> str:
    """A decoding error worded as Rust's `FromUtf8Error`."""
    if e.reason == "unexpected end of data":
        return f"incomplete utf-8 byte sequence from index {e.start}"
    return f"invalid utf-8 sequence of {e.end - e.start} bytes from index {e.start}"
