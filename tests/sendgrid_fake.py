"""A local SendGrid /v3/mail/send server for tests and benchmarks: checks key and schema, records, misbehaves on request.

Scripted faults, one per request in order (then 202): any status (429 with X-RateLimit-Reset, 5xx,
400, 401), `hang_until_released()` (the request is read and recorded, then no answer until
`release()`), and `drop()` (accept-then-drop: recorded as accepted, as SendGrid would have, then
the connection is closed without a reply). `accepted` lists what SendGrid would deliver.
`budget(limit, window)`: a fixed number of requests per window, as SendGrid's rate limit: every
answer carries X-RateLimit-Limit/Remaining/Reset, a request beyond the budget gets 429.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent / "contracts" / "sendgrid-mail-send.schema.json"
API_KEY = "SG.test-key-for-the-fake"


@dataclass
class Reply:
    """One scripted answer: status, extra headers, JSON body, and an optional delay before it."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    action: str = "answer"  # "answer" | "drop" (no reply, socket closed) | "hang" (until released)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the fake answered
    problems: list[str]  # schema / rule violations found in the body
    message_id: str = ""  # the X-Message-Id answered with a 202
    action: str = "answer"  # how the fake treated it: answer / drop / hang

    @property
    def personalizations(self) -> list[dict[str, Any]]:
        return list(self.body.get("personalizations", [])) if isinstance(self.body, dict) else []

    @property
    def emails(self) -> list[str]:
        return [
            to["email"] for p in self.body.get("personalizations", []) for to in p.get("to", [])
        ]


def load_validator(schema_path: Path = SCHEMA_PATH) -> Draft202012Validator:
    schema = json.loads(schema_path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def body_problems(validator: Draft202012Validator, body: Any) -> list[str]:
    """Schema errors plus the rules the schema can't express (total recipients, duplicates, order)."""
    problems = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"[:300]
        for e in itertools.islice(validator.iter_errors(body), 20)
    ]
    if not isinstance(body, dict):
        return problems or ["body is not an object"]
    seen: set[str] = set()
    total = 0
    for p in body.get("personalizations") or []:
        for kind in ("to", "cc", "bcc"):
            for addr in p.get(kind) or []:
                total += 1
                email = str(addr.get("email", "")).lower()
                if email in seen:
                    problems.append(f"duplicate address in one request ({kind})")
                seen.add(email)
    if total > 1000:
        problems.append(f"{total} recipients in one request (max 1000)")
    types = [c.get("type") for c in body.get("content") or []]
    if (
        "text/plain" in types
        and "text/html" in types
        and types.index("text/plain") > types.index("text/html")
    ):
        problems.append("text/plain must come before text/html")
    if "template_id" not in body and not body.get("content"):
        problems.append("content is required without template_id")
    if "subject" not in body and not all(
        "subject" in p for p in body.get("personalizations") or []
    ):
        problems.append("subject is required")
    return problems


class FakeSendGrid:
    """Run with `with FakeSendGrid() as fake:`; point NEWSLETTER_SENDGRID_HOST at `fake.url`."""

    def __init__(self, api_key: str = API_KEY, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.validator = load_validator()
        self.requests: list[Request] = []
        self.script: deque[Reply] = deque()
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.released = threading.Event()  # ends every hang (release())
        self.hanging = threading.Event()  # set once a request is being held by a hang
        self.dropped = threading.Event()  # set once a connection was dropped after acceptance
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None
        self.window_limit: int | None = None  # budget(): requests allowed per window
        self.window_seconds = 60
        self.window_clock: Callable[[], float] = time.time
        self.window_counts: dict[int, int] = {}

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --- scripting -------------------------------------------------------------------------

    def then(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay: float = 0.0,
    ) -> FakeSendGrid:
        """Answer the next request this way (queued; after the script runs out: 202)."""
        self.script.append(Reply(status, headers or {}, body, delay))
        return self

    def rate_limit(self, reset_at: float | None = None) -> FakeSendGrid:
        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
        if reset_at is not None:
            headers["X-RateLimit-Reset"] = str(int(reset_at))
        return self.then(
            429, headers=headers, body={"errors": [{"field": None, "message": "too many requests"}]}
        )

    def budget(
        self, limit: int, window: int = 60, clock: Callable[[], float] = time.time
    ) -> FakeSendGrid:
        """Allow `limit` requests per `window` whole seconds (windows start at multiples of it on
        `clock`); beyond that 429 until the window ends. Every answer then carries X-RateLimit-*
        (Reset: the window's end, Unix seconds). Scripted replies still apply within the budget."""
        self.window_limit, self.window_seconds, self.window_clock = limit, window, clock
        return self

    def _spend(self) -> tuple[dict[str, str], bool]:
        """Count one request against the budget: (rate-limit headers, over the budget)."""
        if self.window_limit is None:
            return {}, False
        now = self.window_clock()
        start = math.floor(now / self.window_seconds) * self.window_seconds
        with self.lock:
            used = self.window_counts.get(start, 0)
            over = used >= self.window_limit
            if not over:
                used = self.window_counts[start] = used + 1
        headers = {
            "X-RateLimit-Limit": str(self.window_limit),
            "X-RateLimit-Remaining": str(max(0, self.window_limit - used)),
            "X-RateLimit-Reset": str(start + self.window_seconds),
        }
        return headers, over

    @property
    def throttled(self) -> list[Request]:
        """Requests answered 429."""
        return [r for r in self.requests if r.status == 429]

    def server_error(self, status: int = 500) -> FakeSendGrid:
        return self.then(status, body={"errors": [{"field": None, "message": "internal error"}]})

    def bad_request(self, message: str, field_name: str | None = None) -> FakeSendGrid:
        return self.then(
            400, body={"errors": [{"field": field_name, "message": message, "help": None}]}
        )

    def unauthorized(self, status: int = 401) -> FakeSendGrid:
        return self.then(
            status,
            body={
                "errors": [
                    {
                        "field": None,
                        "message": "The provided authorization grant is invalid, expired, or revoked",
                    }
                ]
            },
        )

    def hang(self, seconds: float = 30.0) -> FakeSendGrid:
        """Answer only after `seconds` (or at shutdown): longer than the client's timeout."""
        return self.then(202, delay=seconds)

    def hang_until_released(self, *, accept: bool = True) -> FakeSendGrid:
        """Read the next request, then answer nothing until `release()` (or shutdown).

        `accept`: SendGrid took the mail all the same (recorded as 202, counted in `accepted`);
        otherwise it is recorded as never processed (status 0). After the release the fake tries
        to answer 202 (or 500), which a client that timed out never reads.
        """
        status = 202 if accept else 500
        body = None if accept else {"errors": [{"field": None, "message": "internal error"}]}
        self.script.append(Reply(status, {}, body, action="hang"))
        return self

    def release(self) -> None:
        self.released.set()

    def drop(self) -> FakeSendGrid:
        """Accept the next request (recorded with a message id, as SendGrid would keep it), then
        close the connection without sending a byte of reply."""
        self.script.append(Reply(202, action="drop"))
        return self

    # --- inspection ------------------------------------------------------------------------

    @property
    def accepted(self) -> list[Request]:
        return [r for r in self.requests if r.status in (200, 202)]

    @property
    def problems(self) -> list[str]:
        return [p for r in self.requests for p in r.problems]

    # --- server ----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with contextlib.suppress(OSError):  # a dropped or abandoned connection
                    super().handle()

            def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()}
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if self.path != "/v3/mail/send":
                    return self._answer(
                        404, {}, {"errors": [{"field": None, "message": "not found"}]}
                    )
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    fake.requests.append(Request(self.path, headers, body, 401, []))
                    return self._answer(
                        401,
                        {},
                        {
                            "errors": [
                                {
                                    "field": None,
                                    "message": "The provided authorization grant is invalid, expired, or revoked",
                                }
                            ]
                        },
                    )
                problems = (
                    ["body is not JSON"] if body is None else body_problems(fake.validator, body)
                )
                limit_headers, over = fake._spend()
                with fake.lock:  # over the budget: the scripted answer waits for the next one
                    scripted = fake.script and not problems and not over
                    reply = fake.script.popleft() if scripted else None
                if over:
                    reply = Reply(
                        429, {}, {"errors": [{"field": None, "message": "too many requests"}]}
                    )
                if problems:
                    reply = Reply(
                        400, {}, {"errors": [{"field": None, "message": p} for p in problems]}
                    )
                if reply is None:
                    sandbox = bool(
                        ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
                    )
                    reply = Reply(200 if sandbox else 202)
                record = Request(
                    self.path, headers, body, reply.status, problems, action=reply.action
                )
                if reply.status == 202:
                    record.message_id = uuid.uuid4().hex[:22]
                with fake.lock:
                    fake.requests.append(record)
                if reply.action == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    fake.dropped.set()
                    return None
                if reply.action == "hang":
                    fake.hanging.set()
                    fake.released.wait()  # release() or stop()
                if reply.delay:
                    fake.closing.wait(reply.delay)
                headers_out = {**limit_headers, **reply.headers}
                if record.message_id:
                    headers_out["X-Message-Id"] = record.message_id
                with contextlib.suppress(OSError):  # the client gave up (timeout)
                    self._answer(reply.status, headers_out, reply.body)

        return Handler

    def start(self) -> FakeSendGrid:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Run standalone (benchmarks): prints the URL, serves until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY)
    args = parser.parse_args()
    fake = FakeSendGrid(api_key=args.api_key, port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` prints the summary too
    print(fake.url, flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.server.server_close()
        summary = {
            "requests": len(fake.requests),
            "recipients": sum(len(r.emails) for r in fake.requests),
            "problems": fake.problems[:20],
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
