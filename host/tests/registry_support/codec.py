"""The other implementation for host/tests/it/registry_codec_round_trips.rs.

Reads one JSON request on stdin, writes one JSON answer on stdout:

  {"op": "avro-encode", "schema": S, "values": [V...]}     -> {"bodies": [HEX...]}
  {"op": "avro-decode", "schema": S, "bodies": [HEX...]}   -> {"values": [V...]}
  {"op": "proto-encode", "files": {NAME: TEXT}, "message": FULL_NAME, "values": [V...]}
                                                            -> {"bodies": [HEX...]}
  {"op": "proto-decode", "files": {NAME: TEXT}, "bodies": [HEX...]} -> {"values": [V...]}

V is a value in the host's JSON mapping (host/src/registry/MAPPING.md). The
bytes are made and read by the Apache Avro Python library (avro) and the
protobuf package (schemas compiled by grpcio-tools' protoc); this file only
turns the mapping's JSON forms into those libraries' Python values and back,
walking the schema itself. A Protobuf body starts with the registry's message
indexes; "schema.proto" is the file whose messages are meant.
"""

import base64
import datetime
import decimal
import io
import json
import os
import struct
import sys
import tempfile
import uuid

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


# ---------------------------------------------------------------- Avro

class Names:
    """Named types by full name (and short name), as the schema defines them."""

    def __init__(self):
        self.types = {}

    def collect(self, s, space=""):
        if isinstance(s, list):
            for b in s:
                self.collect(b, space)
        elif isinstance(s, dict):
            t = s.get("type")
            if t in ("record", "error", "enum", "fixed"):
                name = s["name"]
                if "." in name:
                    full, space = name, name.rsplit(".", 1)[0]
                else:
                    space = s.get("namespace", space)
                    full = f"{space}.{name}" if space else name
                self.types[full] = s
                self.types.setdefault(name, s)
                for f in s.get("fields", []):
                    self.collect(f["type"], space)
            elif t in ("array",):
                self.collect(s["items"], space)
            elif t in ("map",):
                self.collect(s["values"], space)
            elif isinstance(t, (dict, list)):
                self.collect(t, space)

    def resolve(self, s):
        while isinstance(s, str) and s not in PRIMITIVES:
            s = self.types[s]
        if isinstance(s, dict) and isinstance(s.get("type"), (dict, list)):
            return self.resolve(s["type"])
        if isinstance(s, dict) and isinstance(s.get("type"), str) and s["type"] not in PRIMITIVES | {
            "record", "error", "enum", "fixed", "array", "map"}:
            return self.resolve(s["type"])
        return s


def kind(s):
    """(base type, logical type or None) of a resolved schema."""
    if isinstance(s, str):
        return s, None
    if isinstance(s, list):
        return "union", None
    return s["type"], s.get("logicalType")


def per_second(logical):
    return {"millis": 10**3, "micros": 10**6, "nanos": 10**9}[logical.rsplit("-", 1)[1]]


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def units_since_epoch(text, per, local):
    dt = parse_time(text)
    if local and dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
    frac = text.split(".", 1)[1].rstrip("Z").split("+")[0] if "." in text else ""
    nanos_extra = int(frac[6:9].ljust(3, "0")) if len(frac) > 6 else 0
    return (micros * 1000 + nanos_extra) * per // 10**9


def format_units(value, per):
    secs, frac = divmod(value, per)
    dt = EPOCH + datetime.timedelta(seconds=secs)
    digits = {10**3: 3, 10**6: 6, 10**9: 9}[per]
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + "." + str(frac).rjust(digits, "0") + "Z"


def fits(names, s, v):
    """Whether a JSON value belongs to a union branch (the host's rule: first fit)."""
    s = names.resolve(s)
    base, logical = kind(s)
    if v is None:
        return base == "null"
    if base in ("int", "long"):
        if logical in ("date", "time-millis", "time-micros") or (logical or "").startswith(("timestamp", "local-timestamp")):
            return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
        return isinstance(v, int) and not isinstance(v, bool)
    if base in ("float", "double"):
        return isinstance(v, (int, float)) and not isinstance(v, bool) or v in SPECIAL_FLOATS
    if base == "boolean":
        return isinstance(v, bool)
    if base in ("string", "bytes", "enum", "fixed"):
        return isinstance(v, str)
    if base in ("record", "error"):
        # As the host: every field without a default given, no other key.
        names_of = {f["name"] for f in s["fields"]}
        needed = {f["name"] for f in s["fields"] if "default" not in f and not nullable(names, f["type"])}
        return isinstance(v, dict) and set(v) <= names_of and needed <= set(v)
    if base == "map":
        return isinstance(v, dict)
    if base == "array":
        return isinstance(v, list)
    return False


def nullable(names, s):
    s = names.resolve(s)
    return s == "null" or (isinstance(s, list) and any(names.resolve(b) == "null" for b in s))


def to_native(names, s, v):
    s = names.resolve(s)
    base, logical = kind(s)
    if base == "union":
        for b in s:
            if fits(names, b, v):
                return to_native(names, b, v)
        raise ValueError(f"no branch of {s} fits {v!r}")
    if logical == "decimal" and base in ("bytes", "fixed"):
        # The library writes the digits as they are: give it the schema's scale.
        return decimal.Decimal(str(v)).quantize(decimal.Decimal(1).scaleb(-s.get("scale", 0)))
    if logical == "date" and base == "int":
        return datetime.date.fromisoformat(v)
    if logical in ("time-millis", "time-micros"):
        return datetime.time.fromisoformat(v)
    if logical in ("timestamp-millis", "timestamp-micros") and base == "long":
        return parse_time(v)
    if logical and base == "long" and logical.startswith(("timestamp-", "local-timestamp-")):
        # Not in the Python library: the long it would be given.
        return units_since_epoch(v, per_second(logical), logical.startswith("local"))
    if logical == "duration" and base == "fixed":
        return struct.pack("<III", v["months"], v["days"], v["milliseconds"])
    if logical == "uuid" and base == "fixed":
        return uuid.UUID(v).bytes
    if base in ("bytes", "fixed"):
        return base64.b64decode(v)
    if base in ("float", "double"):
        return SPECIAL_FLOATS.get(v, v) if isinstance(v, str) else float(v)
    if base in ("record", "error"):
        return {f["name"]: to_native(names, f["type"], v.get(f["name"])) for f in s["fields"]}
    if base == "array":
        return [to_native(names, s["items"], x) for x in v]
    if base == "map":
        return {k: to_native(names, s["values"], x) for k, x in v.items()}
    return v


def from_native(names, s, n):
    s = names.resolve(s)
    base, logical = kind(s)
    if base == "union":
        for b in s:
            rb = names.resolve(b)
            if n is None:
                if kind(rb)[0] == "null":
                    return None
                continue
            if native_fits(names, rb, n):
                return from_native(names, b, n)
        raise ValueError(f"no branch of {s} fits {n!r}")
    if logical == "decimal" and base in ("bytes", "fixed"):
        return format(n.quantize(decimal.Decimal(1).scaleb(-s.get("scale", 0))), "f")
    if logical == "date" and base == "int":
        return n.isoformat()
    if logical == "time-millis":
        return n.strftime("%H:%M:%S.") + str(n.microsecond // 1000).rjust(3, "0")
    if logical == "time-micros":
        return n.strftime("%H:%M:%S.%f")
    if logical in ("timestamp-millis", "timestamp-micros") and base == "long":
        delta = n - EPOCH
        micros = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
        per = per_second(logical)
        return format_units(micros * per // 10**6, per)
    if logical and base == "long" and logical.startswith(("timestamp-", "local-timestamp-")):
        return format_units(n, per_second(logical))
    if logical == "duration" and base == "fixed":
        months, days, millis = struct.unpack("<III", n)
        return {"months": months, "days": days, "milliseconds": millis}
    if logical == "uuid" and base == "fixed":
        return str(uuid.UUID(bytes=n))
    if base in ("bytes", "fixed"):
        return base64.b64encode(n).decode()
    if base in ("float", "double"):
        if n != n:
            return "NaN"
        if n in (float("inf"), float("-inf")):
            return "Infinity" if n > 0 else "-Infinity"
        return n
    if base in ("record", "error"):
        return {f["name"]: from_native(names, f["type"], n[f["name"]]) for f in s["fields"]}
    if base == "array":
        return [from_native(names, s["items"], x) for x in n]
    if base == "map":
        return {k: from_native(names, s["values"], x) for k, x in n.items()}
    return n


def native_fits(names, s, n):
    """Whether a Python value read by the library came from this branch."""
    base, logical = kind(s)
    if logical == "decimal" and base in ("bytes", "fixed"):
        return isinstance(n, decimal.Decimal)
    if logical == "date" and base == "int":
        return isinstance(n, datetime.date) and not isinstance(n, datetime.datetime)
    if logical in ("time-millis", "time-micros"):
        return isinstance(n, datetime.time)
    if logical in ("timestamp-millis", "timestamp-micros") and base == "long":
        return isinstance(n, datetime.datetime)
    if base == "boolean":
        return isinstance(n, bool)
    if base in ("int", "long"):
        return isinstance(n, int) and not isinstance(n, bool)
    if base in ("float", "double"):
        return isinstance(n, float)
    if base in ("string", "enum"):
        return isinstance(n, str)
    if base in ("bytes", "fixed"):
        return isinstance(n, bytes)
    if base in ("record", "error"):
        return isinstance(n, dict) and set(n) == {f["name"] for f in s["fields"]}
    if base == "map":
        return isinstance(n, dict)
    if base == "array":
        return isinstance(n, list)
    return False


def avro_schema(request):
    import avro.schema
    text = json.dumps(request["schema"])
    names = Names()
    names.collect(request["schema"])
    return avro.schema.parse(text), names


def avro_encode(request):
    import avro.io
    schema, names = avro_schema(request)
    bodies = []
    for v in request["values"]:
        out = io.BytesIO()
        avro.io.DatumWriter(schema).write(to_native(names, request["schema"], v), avro.io.BinaryEncoder(out))
        bodies.append(out.getvalue().hex())
    return {"bodies": bodies}


def avro_decode(request):
    import avro.io
    schema, names = avro_schema(request)
    values = []
    for hex_body in request["bodies"]:
        reader = avro.io.BinaryDecoder(io.BytesIO(bytes.fromhex(hex_body)))
        values.append(from_native(names, request["schema"], avro.io.DatumReader(schema).read(reader)))
    return {"values": values}


# ---------------------------------------------------------------- Protobuf

def proto_pool(files):
    """Compiles the files with protoc (grpcio-tools) into a descriptor pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_tools import protoc
    import grpc_tools
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            path = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        out = os.path.join(tmp, "set.pb")
        code = protoc.main(["protoc", f"-I{tmp}", f"-I{well_known}", "--include_imports",
                            f"--descriptor_set_out={out}", "schema.proto"])
        if code != 0:
            raise SystemExit(f"protoc failed ({code})")
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return pool, pool.FindFileByName("schema.proto")


def zigzag(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_zigzag(data, pos):
    shift = value = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7


def indexes_of(desc):
    path = []
    while desc.containing_type is not None:
        parent = desc.containing_type
        path.append(list(parent.nested_types).index(desc))
        desc = parent
    path.append(list(desc.file.message_types_by_name.values()).index(desc))
    return path[::-1]


def message_class(desc):
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(desc)


WIDE_WRAPPERS = {"google.protobuf.Int64Value", "google.protobuf.UInt64Value"}


def numbers_for_int64(desc, value):
    """MessageToDict writes 64-bit integers as strings; the host as numbers."""
    from google.protobuf.descriptor import FieldDescriptor as F
    wide = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64}
    if not isinstance(value, dict) or desc.full_name.startswith("google.protobuf."):
        return value
    for field in desc.fields:
        if field.name not in value:
            continue
        v = value[field.name]
        if field.message_type is not None and field.message_type.full_name in WIDE_WRAPPERS:
            value[field.name] = int(v)
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            vf = field.message_type.fields_by_name["value"]
            value[field.name] = {k: (int(x) if vf.type in wide else numbers_for_int64(vf.message_type, x) if vf.message_type else x)
                                 for k, x in v.items()}
        elif field.type in wide:
            value[field.name] = [int(x) for x in v] if isinstance(v, list) else int(v)
        elif field.message_type is not None:
            value[field.name] = [numbers_for_int64(field.message_type, x) for x in v] if isinstance(v, list) \
                else numbers_for_int64(field.message_type, v)
    return value


def proto_encode(request):
    from google.protobuf import json_format
    pool, _ = proto_pool(request["files"])
    desc = pool.FindMessageTypeByName(request["message"])
    cls = message_class(desc)
    prefix = b"".join(zigzag(i) for i in [len(indexes_of(desc))] + indexes_of(desc))
    if indexes_of(desc) == [0]:
        prefix = b"\x00"
    bodies = []
    for v in request["values"]:
        message = json_format.ParseDict(v, cls(), descriptor_pool=pool)
        bodies.append((prefix + message.SerializeToString()).hex())
    return {"bodies": bodies}


def proto_decode(request):
    from google.protobuf import json_format
    pool, file = proto_pool(request["files"])
    values = []
    for hex_body in request["bodies"]:
        data = bytes.fromhex(hex_body)
        count, pos = read_zigzag(data, 0)
        indexes = [0]
        if count:
            indexes = []
            for _ in range(count):
                i, pos = read_zigzag(data, pos)
                indexes.append(i)
        desc = list(file.message_types_by_name.values())[indexes[0]]
        for i in indexes[1:]:
            desc = desc.nested_types[i]
        message = message_class(desc)()
        message.ParseFromString(data[pos:])
        value = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                          always_print_fields_with_no_presence=True, descriptor_pool=pool)
        values.append(numbers_for_int64(desc, value))
    return {"values": values}


def main():
    request = json.load(sys.stdin)
    op = {"avro-encode": avro_encode, "avro-decode": avro_decode,
          "proto-encode": proto_encode, "proto-decode": proto_decode}[request["op"]]
    json.dump(op(request), sys.stdout)


if __name__ == "__main__":
    main()
