"""Generator of `{"Favorite Language": "..."}` messages, like `plugins/langs`.

Settings (optional): `{"values": ["Rust", "Zig"]}` replaces the built-in list.
"""
import json
import random

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.generator import Message

PLUGIN = "py-langs"
FIELD = "Favorite Language"
LANGUAGES = [
    "Rust", "Python", "Go", "Java", "JavaScript", "TypeScript", "C", "C++",
    "C#", "Kotlin", "Swift", "Ruby", "Haskell", "Elixir", "Scala", "Zig",
]

# SystemRandom reads os.urandom, that is `wasi:random`, at every call, so a
# seeded pipeline replays the same messages. componentize-py snapshots the
# interpreter at build time; it reseeds `random` when an instance starts
# (checked: seeds 7, 7, 8 give A, A, B), but not with `--stub-wasi`, and
# reading at call time does not depend on that detail.
_random = random.SystemRandom()


def parse_settings(settings: str) -> list[str]:
    try:
        parsed = json.loads(settings)
    except ValueError as e:
        raise Err(f"{PLUGIN}: invalid settings: {e}")
    if not isinstance(parsed, dict):
        raise Err(f"{PLUGIN}: invalid settings: expected a JSON object")
    unknown = sorted(set(parsed) - {"values"})
    if unknown:
        raise Err(f"{PLUGIN}: invalid settings: unknown field {unknown[0]!r}, expected 'values'")
    values = parsed.get("values")
    if values is None:
        return list(LANGUAGES)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise Err(f"{PLUGIN}: invalid settings: values must be a list of strings")
    if not values:
        raise Err(f"{PLUGIN}: settings.values must not be empty")
    return values


class Generator(exports.Generator):
    values: list[str] = LANGUAGES

    def configure(self, settings: str) -> None:
        Generator.values = parse_settings(settings)

    def next(self, max: int) -> list[Message]:
        return [self.message() for _ in range(max)]

    def message(self) -> Message:
        payload = json.dumps({FIELD: _random.choice(self.values)}, separators=(",", ":"), ensure_ascii=False)
        return Message(key=None, payload=payload.encode())
