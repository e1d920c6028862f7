"""Maps a JSON message to the old demo's row, exactly as `plugins/json-row`
does: `message_text` (the JSON text), `message_time` (the Kafka timestamp),
`offset_id` and `partition_id`. Payloads that are empty, not UTF-8 or not
JSON are rejected with the Rust mapper's reasons, word for word.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.mapper import Message, Outcome, Outcome_Rejected, Outcome_Rows, Table, TableRows
from wit_world.imports.types import (
    Column,
    ColumnType,
    Value_Integer,
    Value_Null,
    Value_Text,
    Value_Timestamp,
)

from strict_json import json_error, utf8_error

PLUGIN = "py-json-row"
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
# json.loads recurses in C for each nesting level, and deep nesting overflows
# the WebAssembly stack (a trap, not a RecursionError); payloads that may nest
# deeper go to the strict checker, which keeps its own stack.
MAX_FAST_NESTING = 200

COLUMNS = [
    Column("message_text", ColumnType.TEXT, False),
    Column("message_time", ColumnType.TIMESTAMP, True),
    Column("offset_id", ColumnType.INTEGER, False),
    Column("partition_id", ColumnType.INTEGER, False),
]


class NotJson(ValueError):
    pass


def _refuse_constant(name: str):
    # json.loads takes NaN and Infinity; JSON (and serde_json) does not.
    raise NotJson(name)


def validate(payload: bytes | None) -> str:
    """The payload as text, or ValueError with the reason to reject it."""
    if not payload:
        raise ValueError("empty payload")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"payload is not valid UTF-8: {utf8_error(e)}") from None
    if payload.count(b"[") + payload.count(b"{") <= MAX_FAST_NESTING:
        try:
            # Fast path for the usual, valid message; json.loads accepts
            # nothing that is not JSON once NaN and Infinity are refused.
            json.loads(text, parse_constant=_refuse_constant)
            return text
        except (ValueError, RecursionError):
            pass  # not JSON, or JSON Python will not read (huge integers)
    # The strict checker decides and words the reason.
    reason = json_error(payload)
    if reason is not None:
        raise ValueError(f"payload is not JSON: {reason}")
    return text


def map_one(message: Message) -> Outcome:
    try:
        text = validate(message.payload)
    except ValueError as e:
        return Outcome_Rejected(str(e))
    if message.timestamp is None:
        time = Value_Null()
    else:
        time = Value_Timestamp(min(max(message.timestamp * 1000, I64_MIN), I64_MAX))
    return Outcome_Rows(
        [TableRows(0, [[Value_Text(text), time, Value_Integer(message.offset), Value_Integer(message.partition)]])]
    )


class Mapper(exports.Mapper):
    def configure(self, settings: str) -> list[Table]:
        try:
            parsed = json.loads(settings)
        except ValueError as e:
            raise Err(f"{PLUGIN}: invalid settings: {e}")
        if not isinstance(parsed, dict):
            raise Err(f"{PLUGIN}: invalid settings: expected a JSON object")
        # No settings yet; refuse unknown ones so a typo is not silently ignored.
        for key in parsed:
            raise Err(f"{PLUGIN}: unknown setting {key!r} (this mapper takes none)")
        # One table, unnamed: the sink's.
        return [Table(name=None, columns=COLUMNS, key=None)]

    def map_batch(self, messages: list[Message]) -> list[Outcome]:
        return [map_one(m) for m in messages]
