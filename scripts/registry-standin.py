#!/usr/bin/env python3
"""A stand-in schema registry following the Confluent Schema Registry REST
contract (the API Aiven's Karapace serves), for the local stack and the tests.

No registry server is installable here, so this one, like the Aiven stand-in,
keeps to the documented contract: global schema ids (the same schema text
under another subject gets the same id), subjects and versions, compatibility
answers (BACKWARD for Avro; other types are answered compatible), the
documented error codes, HTTP basic auth and TLS. Python standard library only.

  registry-standin.py --port 8081 --cert C --key K --user U --password-env VAR \
      [--data FILE] [--port-file FILE]

--port 0 picks a free port (written to --port-file once listening). Data lives
in memory and, with --data, in that JSON file (rewritten after each change), so
a restarted instance serves the same ids. GET /_requests answers how many
requests each path got (unauthenticated use is refused like any other path),
so tests can count the host's lookups; DELETE /_requests resets the counts.
"""

import argparse
import base64
import hmac
import json
import os
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LEVELS = {
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
}


class Failure(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found_subject(subject):
    return Failure(404, 40401, f"Subject '{subject}' not found.")


# ------------------------------------------------------------ Avro checks

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def avro_parse(text):
    """The schema as JSON, checked enough to refuse what is not Avro."""
    try:
        schema = json.loads(text)
    except ValueError as e:
        raise Failure(422, 42201, f"Invalid schema: not JSON: {e}")
    named = {}
    avro_check(schema, named, "")
    return schema, named


def avro_check(s, named, namespace):
    if isinstance(s, str):
        if s in PRIMITIVES or s in named or f"{namespace}.{s}" in named:
            return
        raise Failure(422, 42201, f"Invalid schema: unknown type {s!r}")
    if isinstance(s, list):
        for branch in s:
            avro_check(branch, named, namespace)
        return
    if not isinstance(s, dict) or "type" not in s:
        raise Failure(422, 42201, f"Invalid schema: {json.dumps(s)[:80]} has no type")
    t = s["type"]
    if t in ("record", "error", "enum", "fixed"):
        name = s.get("name")
        if not isinstance(name, str) or not name:
            raise Failure(422, 42201, f"Invalid schema: a {t} needs a name")
        ns = s.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        named[full] = s
        named.setdefault(name, s)
        if t in ("record", "error"):
            fields = s.get("fields")
            if not isinstance(fields, list):
                raise Failure(422, 42201, f"Invalid schema: record {name} needs fields")
            for f in fields:
                if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "type" not in f:
                    raise Failure(422, 42201, f"Invalid schema: a field of {name} needs a name and a type")
                avro_check(f["type"], named, ns)
        elif t == "enum" and not isinstance(s.get("symbols"), list):
            raise Failure(422, 42201, f"Invalid schema: enum {name} needs symbols")
        elif t == "fixed" and not isinstance(s.get("size"), int):
            raise Failure(422, 42201, f"Invalid schema: fixed {name} needs a size")
    elif t == "array":
        avro_check(s.get("items"), named, namespace)
    elif t == "map":
        avro_check(s.get("values"), named, namespace)
    else:
        avro_check(t, named, namespace)


def resolve(s, named):
    if isinstance(s, str) and s not in PRIMITIVES:
        return named.get(s, s)
    if isinstance(s, dict) and isinstance(s.get("type"), str) and s["type"] in PRIMITIVES:
        return s["type"]
    return s


def kind(s):
    if isinstance(s, list):
        return "union"
    if isinstance(s, str):
        return s
    return s["type"]


def avro_readable(reader, writer, rnamed, wnamed, path, seen):
    """Why `reader` cannot read data written with `writer`, or None."""
    reader, writer = resolve(reader, rnamed), resolve(writer, wnamed)
    if kind(writer) == "union":
        for branch in writer:
            why = avro_readable(reader, branch, rnamed, wnamed, path, seen)
            if why:
                return why
        return None
    if kind(reader) == "union":
        for branch in reader:
            if avro_readable(branch, writer, rnamed, wnamed, path, seen) is None:
                return None
        return f"{path or 'the schema'}: the reader's union has no branch for the writer's {kind(writer)}"
    rk, wk = kind(reader), kind(writer)
    if rk != wk:
        if rk in PROMOTIONS.get(wk, set()):
            return None
        return f"{path or 'the schema'}: type {wk} cannot be read as {rk}"
    if rk == "record":
        key = (id(reader), id(writer))
        if key in seen:
            return None
        seen.add(key)
        written = {f["name"]: f for f in writer["fields"]}
        for f in reader["fields"]:
            w = written.get(f["name"])
            where = f"{path}.{f['name']}" if path else f["name"]
            if w is None:
                if "default" not in f:
                    return f"{where}: reader field {f['name']!r} is missing in the writer's schema and has no default"
                continue
            why = avro_readable(f["type"], w["type"], rnamed, wnamed, where, seen)
            if why:
                return why
    elif rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return f"{path or reader['name']}: the reader's enum lacks symbols {sorted(missing)}"
    elif rk == "fixed":
        if reader["size"] != writer["size"]:
            return f"{path or reader['name']}: fixed size {writer['size']} read as {reader['size']}"
    elif rk == "array":
        return avro_readable(reader["items"], writer["items"], rnamed, wnamed, path + "[]", seen)
    elif rk == "map":
        return avro_readable(reader["values"], writer["values"], rnamed, wnamed, path + "{}", seen)
    return None


# ------------------------------------------------------------ the store


class Store:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.schemas = []  # index = id - 1: {"schema", "schemaType", "references"}
        self.subjects = {}  # subject -> [ids], version = index + 1
        self.config = {"": "BACKWARD"}
        self.requests = {}
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.schemas = data["schemas"]
            self.subjects = data["subjects"]
            self.config = data["config"]

    def save(self):
        if not self.path:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"schemas": self.schemas, "subjects": self.subjects, "config": self.config}, f)
        os.replace(tmp, self.path)

    @staticmethod
    def canonical(schema_type, text):
        if schema_type in ("AVRO", "JSON"):
            try:
                return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
            except ValueError:
                return text
        return text.strip()

    def find(self, body):
        key = (body["schemaType"], self.canonical(body["schemaType"], body["schema"]), json.dumps(body["references"], sort_keys=True))
        for i, s in enumerate(self.schemas):
            if (s["schemaType"], self.canonical(s["schemaType"], s["schema"]), json.dumps(s["references"], sort_keys=True)) == key:
                return i + 1
        return None

    def schema(self, schema_id):
        if not 1 <= schema_id <= len(self.schemas):
            raise Failure(404, 40403, "Schema not found")
        return self.schemas[schema_id - 1]

    def versions(self, subject):
        ids = self.subjects.get(subject)
        if not ids:
            raise not_found_subject(subject)
        return ids

    def version(self, subject, version):
        ids = self.versions(subject)
        if version == "latest" or version == "-1":
            n = len(ids)
        else:
            try:
                n = int(version)
            except ValueError:
                raise Failure(422, 42202, f"The specified version '{version}' is not a valid version id.")
            if not 1 <= n <= len(ids):
                raise Failure(404, 40402, f"Version {version} not found.")
        return n, ids[n - 1]

    def level(self, subject):
        return self.config.get(subject) or self.config[""]

    def incompatible(self, subject, body, against):
        """Why `body` may not follow the versions `against` (ids), or None."""
        if body["schemaType"] != "AVRO":
            return None
        reader, rnamed = avro_parse(body["schema"])
        for schema_id in against:
            old = self.schemas[schema_id - 1]
            if old["schemaType"] != "AVRO":
                continue
            writer, wnamed = avro_parse(old["schema"])
            why = avro_readable(reader, writer, rnamed, wnamed, "", set())
            if why:
                return why
        return None

    def compatibility_targets(self, subject):
        ids = self.subjects.get(subject) or []
        level = self.level(subject)
        if level == "NONE" or not ids:
            return []
        if level.startswith("BACKWARD") or level.startswith("FULL"):
            return ids if level.endswith("TRANSITIVE") else ids[-1:]
        return []  # FORWARD: not checked by the stand-in

    def register(self, subject, body):
        if body["schemaType"] == "AVRO":
            avro_parse(body["schema"])
        elif body["schemaType"] == "JSON":
            try:
                json.loads(body["schema"])
            except ValueError as e:
                raise Failure(422, 42201, f"Invalid schema: not JSON: {e}")
        for ref in body["references"]:
            self.version(ref["subject"], str(ref["version"]))
        existing = self.find(body)
        ids = self.subjects.get(subject, [])
        if existing is not None and existing in ids:
            return existing
        why = self.incompatible(subject, body, self.compatibility_targets(subject))
        if why:
            raise Failure(
                409,
                409,
                f"Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{why}]",
            )
        if existing is None:
            self.schemas.append({"schema": body["schema"], "schemaType": body["schemaType"], "references": body["references"]})
            existing = len(self.schemas)
        self.subjects.setdefault(subject, []).append(existing)
        self.save()
        return existing


def schema_body(raw):
    if not isinstance(raw, dict) or not isinstance(raw.get("schema"), str):
        raise Failure(422, 42201, "Invalid schema: the body needs a \"schema\" string")
    schema_type = raw.get("schemaType") or "AVRO"
    if schema_type not in ("AVRO", "PROTOBUF", "JSON"):
        raise Failure(422, 42201, f"Invalid schema type {schema_type!r}")
    refs = raw.get("references") or []
    for r in refs:
        if not all(k in r for k in ("name", "subject", "version")):
            raise Failure(422, 42201, "Invalid schema: a reference needs name, subject and version")
    refs = [{"name": r["name"], "subject": r["subject"], "version": int(r["version"])} for r in refs]
    return {"schema": raw["schema"], "schemaType": schema_type, "references": refs}


def shown(schema, extra):
    out = dict(extra)
    out["schema"] = schema["schema"]
    if schema["schemaType"] != "AVRO":
        out["schemaType"] = schema["schemaType"]
    if schema["references"]:
        out["references"] = schema["references"]
    return out


# ------------------------------------------------------------ HTTP


class TlsServer(ThreadingHTTPServer):
    """TLS per connection, the handshake in the connection's thread: a
    client that never speaks TLS holds up only itself."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that does not speak TLS, or hangs up: one line, no traceback.
        sys.stderr.write(f"registry-standin: connection from {client_address[0]} dropped: {sys.exc_info()[1]}\n")

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "registry-standin/1"
    timeout = 30

    def setup(self):
        super().setup()
        self.request.do_handshake()

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError) as e:
            self.log_message("connection dropped: %s", e)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="schema-registry"')
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True)
        except ValueError:
            return False
        expected = f"{self.server.user}:{self.server.password}".encode()
        return hmac.compare_digest(given, expected)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n == 0:
            return {}
        try:
            return json.loads(self.rfile.read(n))
        except ValueError:
            raise Failure(400, 400, "Unrecognized request body: not JSON")

    def handle_any(self, method):
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
        query = parse_qs(url.query)
        store = self.server.store
        try:
            # The body is read before anything is answered, so a keep-alive
            # connection stays in step after an error.
            body = self.body() if method in ("POST", "PUT") else {}
            if not self.authorized():
                raise Failure(401, 401, "Unauthorized")
            with store.lock:
                if parts and parts[0] != "_requests":
                    key = f"{method} /" + "/".join(parts)
                    store.requests[key] = store.requests.get(key, 0) + 1
                status, payload = self.route(method, parts, query, body, store)
        except Failure as f:
            status, payload = f.status, {"error_code": f.code, "message": f.message}
        except Exception as e:  # an answer, never a dropped connection
            status, payload = 500, {"error_code": 50001, "message": f"Error in the backend data store: {e}"}
        self.reply(status, payload)

    def route(self, method, p, query, body, store):
        n = len(p)
        if p == ["_requests"]:
            if method == "DELETE":
                store.requests.clear()
            return 200, store.requests
        if n >= 3 and p[0] == "schemas" and p[1] == "ids" and method == "GET":
            try:
                schema_id = int(p[2])
            except ValueError:
                raise Failure(404, 40403, "Schema not found")
            schema = store.schema(schema_id)
            if n == 3:
                subject = (query.get("subject") or [None])[0]
                if subject and schema_id not in store.subjects.get(subject, []):
                    raise Failure(404, 40403, "Schema not found")
                return 200, shown(schema, {})
            if n == 4 and p[3] == "versions":
                return 200, [
                    {"subject": s, "version": i + 1}
                    for s, ids in sorted(store.subjects.items())
                    for i, x in enumerate(ids)
                    if x == schema_id
                ]
            if n == 4 and p[3] == "subjects":
                return 200, sorted(s for s, ids in store.subjects.items() if schema_id in ids)
        if p == ["subjects"] and method == "GET":
            return 200, sorted(s for s, ids in store.subjects.items() if ids)
        if n >= 2 and p[0] == "subjects":
            subject = p[1]
            if n == 2 and method == "POST":
                ids = store.versions(subject)
                found = store.find(schema_body(body))
                if found is None or found not in ids:
                    raise Failure(404, 40403, "Schema not found")
                version = ids.index(found) + 1
                return 200, shown(store.schema(found), {"subject": subject, "id": found, "version": version})
            if n == 2 and method == "DELETE":
                ids = store.versions(subject)
                del store.subjects[subject]
                store.config.pop(subject, None)
                store.save()
                return 200, list(range(1, len(ids) + 1))
            if n == 3 and p[2] == "versions":
                if method == "GET":
                    return 200, list(range(1, len(store.versions(subject)) + 1))
                if method == "POST":
                    return 200, {"id": store.register(subject, schema_body(body))}
            if n in (4, 5) and p[2] == "versions" and method == "GET":
                version, schema_id = store.version(subject, p[3])
                schema = store.schema(schema_id)
                if n == 5 and p[4] == "schema":
                    return 200, json.loads(schema["schema"]) if schema["schemaType"] != "PROTOBUF" else schema["schema"]
                return 200, shown(schema, {"subject": subject, "id": schema_id, "version": version})
        if n == 5 and p[:2] == ["compatibility", "subjects"] and p[3] == "versions" and method == "POST":
            _, schema_id = store.version(p[2], p[4])
            why = store.incompatible(p[2], schema_body(body), [schema_id])
            out = {"is_compatible": why is None}
            if why and (query.get("verbose") or ["false"])[0] == "true":
                out["messages"] = [why]
            return 200, out
        if p and p[0] == "config" and n <= 2:
            subject = p[1] if n == 2 else ""
            if method == "GET":
                level = store.config.get(subject)
                if level is None:
                    raise Failure(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
                return 200, {"compatibilityLevel": level}
            if method == "PUT":
                level = body.get("compatibility")
                if level not in LEVELS:
                    raise Failure(422, 42203, f"Invalid compatibility level {level!r}; use one of {sorted(LEVELS)}")
                store.config[subject] = level
                store.save()
                return 200, {"compatibility": level}
        raise Failure(404, 404, f"HTTP 404 Not Found: {method} {self.path}")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--port-file", help="write the port here once listening (with --port 0)")
    ap.add_argument("--cert", required=True, help="server certificate (PEM)")
    ap.add_argument("--key", required=True, help="its private key (PEM)")
    ap.add_argument("--user", default="avnadmin")
    ap.add_argument("--password-env", default="SCHEMA_REGISTRY_PASSWORD", help="variable holding the password")
    ap.add_argument("--data", help="JSON file keeping the schemas across restarts")
    args = ap.parse_args()
    password = os.environ.get(args.password_env)
    if not password:
        sys.exit(f"registry-standin: set {args.password_env} to the password clients must give")
    server = TlsServer((args.host, args.port), Handler)
    server.store = Store(args.data)
    server.user, server.password = args.user, password
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    server.tls = ctx
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    sys.stderr.write(f"registry-standin: listening on https://{args.host}:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
