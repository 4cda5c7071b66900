"""A stand-in Confluent Schema Registry for tests: just what confluent-kafka's Avro
serializer and deserializer call (register a schema under a subject, fetch one by id),
its state kept in a JSON file so a restarted stub serves the same ids.

    python -m tests.registry_stub PORT STATE_FILE
"""

from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATE = Path()


def _load() -> dict[str, Any]:
    return json.loads(STATE.read_text()) if STATE.exists() else {"schemas": []}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        match = re.match(r"^/subjects/([^/?]+)/versions", self.path)
        if not match:
            self._send(404, {"error_code": 404, "message": "not found"})
            return
        schema = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
        state = _load()
        if schema not in state["schemas"]:
            state["schemas"].append(schema)
            STATE.write_text(json.dumps(state))
        self._send(200, {"id": state["schemas"].index(schema) + 1})

    def do_GET(self) -> None:
        match = re.match(r"^/schemas/ids/(\d+)", self.path)
        schemas = _load()["schemas"]
        if not match or not 0 < int(match[1]) <= len(schemas):
            self._send(404, {"error_code": 40403, "message": "Schema not found"})
            return
        self._send(200, {"schema": schemas[int(match[1]) - 1]})

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    STATE = Path(sys.argv[2])
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
