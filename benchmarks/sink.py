"""A lean SendGrid /v3/mail/send sink for the benchmark: 202 at once, counts, schema-checks a sample.

Run as its own process (`python benchmarks/sink.py --api-key KEY`); it prints its URL on the first
line. GET /stats returns the counters as JSON, POST /reset zeroes them (and ends throttling), POST
/throttle-once makes it answer 429 (with X-RateLimit-Reset one second on) to the first request
of every batch, told apart by its first delivery id, and 202 to that batch's next request: a
full-batch rate limit, once. Every `--sample-every`-th
request (and the first) is checked after the answer was sent, with the same rules as the tests'
fake (tests/sendgrid_fake.py: the JSON schema in tests/contracts plus the rules it can't express).
Every request's delivery ids are checked for duplicates.

The schema check is the stand-in's main cost: jsonschema takes ~120 ms for a 1,000-person body
(~14 ms per 1,000 recipients at every 10th), the compiled validator (jsonschema_rs, installed
with the dev extras) ~1 ms for the same verdict. A body it finds valid gets the fake's other
rules; one it rejects goes through jsonschema for the messages (and is flagged even if
jsonschema would pass it). Without jsonschema_rs, jsonschema checks every sampled body.
Every body is parsed whole (orjson when it is installed, ~3x faster than json's ~3 ms per
1,000-person body): a body that is not JSON gets its 400 whether sampled or not.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

try:
    from orjson import loads as parse_json
except ImportError:  # not a dependency of the project; the same result, slower
    parse_json = json.loads

from sendgrid_fake import SCHEMA_PATH, body_problems, load_validator  # noqa: E402


class _SchemaPassed:
    """Stands in for the jsonschema validator once the compiled one found no schema errors."""

    def iter_errors(self, body: Any) -> Any:
        return iter(())


class Checker:
    """The fake's checks of one body: the schema (compiled when it can be) and the other rules."""

    def __init__(self, validator: Any, compiled: Any = None) -> None:
        self.validator = validator
        self.compiled = compiled

    @classmethod
    def load(cls) -> Checker:
        validator = load_validator()
        try:
            import jsonschema_rs
        except ImportError:
            return cls(validator)
        schema = json.loads(SCHEMA_PATH.read_text())
        return cls(validator, jsonschema_rs.Draft202012Validator(schema, validate_formats=False))

    def problems(self, body: Any) -> list[str]:
        if self.compiled is None:
            return body_problems(self.validator, body)
        if self.compiled.is_valid(body):
            return body_problems(_SchemaPassed(), body)
        found = body_problems(self.validator, body)
        return found or ["the compiled schema check rejected the body, jsonschema passed it"]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.recipients = 0
        self.validated = 0
        self.problems: list[str] = []
        self.delivery_ids: set[str] = set()
        self.duplicates = 0
        self.unauthorized = 0
        self.bytes = 0
        self.throttle_once = False
        self.throttled_keys: set[str] = set()
        self.throttled = 0  # requests answered 429
        self.throttled_recipients = 0
        self.first_at: float | None = None  # wall clock (time.time) of the first accepted request
        self.last_at: float | None = None  # and of the last one

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "recipients": self.recipients,
            "validated_requests": self.validated,
            "problems": self.problems[:20],
            "duplicate_delivery_ids": self.duplicates,
            "unauthorized": self.unauthorized,
            "bytes": self.bytes,
            "throttled_requests": self.throttled,
            "throttled_recipients": self.throttled_recipients,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


def make_handler(
    stats: Stats, api_key: str, sample_every: int, checker: Checker
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self) -> None:
            if self.path != "/stats":
                return self._reply(404, b"{}")
            with stats.lock:
                data = json.dumps(stats.as_dict()).encode()
            self._reply(200, data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/reset":
                with stats.lock:
                    stats.reset()
                return self._reply(200, b"{}")
            if self.path == "/throttle-once":
                with stats.lock:
                    stats.throttle_once = True
                return self._reply(200, b"{}")
            if self.path != "/v3/mail/send":
                return self._reply(404, b'{"errors":[{"message":"not found"}]}')
            if self.headers.get("Authorization") != f"Bearer {api_key}":
                with stats.lock:
                    stats.unauthorized += 1
                return self._reply(401, b'{"errors":[{"message":"bad key"}]}')
            try:
                body = parse_json(raw)
                people = body["personalizations"]
            except (ValueError, KeyError, TypeError):
                return self._reply(400, b'{"errors":[{"message":"body is not JSON"}]}')
            ids = [str((p.get("custom_args") or {}).get("delivery_id", "")) for p in people]
            count = sum(len(p.get("to") or ()) for p in people)
            with stats.lock:  # a batch's first request, when throttling: 429, accept nothing
                key = ids[0] if ids else ""
                throttle = stats.throttle_once and key not in stats.throttled_keys
                if throttle:
                    stats.throttled_keys.add(key)
                    stats.throttled += 1
                    stats.throttled_recipients += count
            if throttle:
                reset = str(int(time.time()) + 1)
                return self._reply(
                    429,
                    b'{"errors":[{"field":null,"message":"too many requests"}]}',
                    {"X-RateLimit-Reset": reset},
                )
            with stats.lock:
                stats.first_at = stats.first_at or time.time()
                stats.last_at = time.time()
                number = stats.requests
                stats.requests += 1
                stats.recipients += count
                stats.bytes += len(raw)
                for i in ids:
                    if i and i in stats.delivery_ids:
                        stats.duplicates += 1
                    stats.delivery_ids.add(i)
            self._reply(202, b"", {"X-Message-Id": uuid.uuid4().hex[:22]})
            if number % sample_every == 0:  # after answering: checking costs the client nothing
                problems = checker.problems(body)
                with stats.lock:
                    stats.validated += 1
                    stats.problems.extend(problems)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--sample-every", type=int, default=10)
    args = parser.parse_args()
    stats = Stats()
    handler = make_handler(stats, args.api_key, max(1, args.sample_every), Checker.load())
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
