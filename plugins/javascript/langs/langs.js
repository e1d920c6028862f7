// Generator of `{"Favorite Language": "..."}` messages, like `plugins/langs`.
// Settings (optional): `{"values": ["Rust", "Zig"]}` replaces the built-in list.

const PLUGIN = "js-langs";
const FIELD = "Favorite Language";
const LANGUAGES = [
  "Rust", "Python", "Go", "Java", "JavaScript", "TypeScript", "C", "C++",
  "C#", "Kotlin", "Swift", "Ruby", "Haskell", "Elixir", "Scala", "Zig",
];

const encoder = new TextEncoder();
let values = LANGUAGES;

// crypto.getRandomValues reads `wasi:random` at every call, so a seeded
// pipeline replays the same messages. Math.random is not used: its state is
// seeded when the engine starts, which componentize-js does at build time.
function randomIndex(length) {
  const [word] = crypto.getRandomValues(new BigUint64Array(1));
  return Number(word % BigInt(length));
}

function parseSettings(settings) {
  let parsed;
  try {
    parsed = JSON.parse(settings);
  } catch (e) {
    throw `${PLUGIN}: invalid settings: ${e.message}`;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw `${PLUGIN}: invalid settings: expected a JSON object`;
  }
  const unknown = Object.keys(parsed).filter((k) => k !== "values");
  if (unknown.length > 0) {
    throw `${PLUGIN}: invalid settings: unknown field "${unknown[0]}", expected "values"`;
  }
  if (parsed.values === undefined || parsed.values === null) return LANGUAGES;
  if (!Array.isArray(parsed.values) || !parsed.values.every((v) => typeof v === "string")) {
    throw `${PLUGIN}: invalid settings: values must be a list of strings`;
  }
  if (parsed.values.length === 0) throw `${PLUGIN}: settings.values must not be empty`;
  return parsed.values;
}

export const generator = {
  configure(settings) {
    values = parseSettings(settings);
  },

  next(max) {
    return Array.from({ length: max }, () => ({
      key: undefined,
      payload: encoder.encode(JSON.stringify({ [FIELD]: values[randomIndex(values.length)] })),
    }));
  },
};
