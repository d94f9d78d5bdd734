"""A local SendGrid for tests and benchmarks: /v3/mail/send (checks key and schema, records, misbehaves on
request), the account API the Settings page uses, and the signed Event Webhook posting back.

Scripted faults, one per request in order (then 202): any status (429 with X-RateLimit-Reset, 5xx,
400, 401), `hang_until_released()` (the request is read and recorded, then no answer until
`release()`), and `drop()` (accept-then-drop: recorded as accepted, as SendGrid would have, then
the connection is closed without a reply). `accepted` lists what SendGrid would deliver.
`budget(limit, window)`: a fixed number of requests per window, as SendGrid's rate limit: every
answer carries X-RateLimit-Limit/Remaining/Reset, a request beyond the budget gets 429.

Account API (each request's body checked against contracts/sendgrid-webhook-settings.schema.json,
from SendGrid's published OpenAPI documents, as mail-send bodies are; recorded in `api_calls`):
`GET /v3/scopes` (answers `scopes`, settable), `GET /v3/user/webhooks/event/settings/all`,
`POST /v3/user/webhooks/event/settings`, `GET|PATCH /v3/user/webhooks/event/settings/{id}`,
`GET|PATCH /v3/user/webhooks/event/settings/signed/{id}` (the public key of the fake's own
P-256 signing key once signing is on). Webhooks set up are in `webhooks`.

Event posting (as SendGrid posts to the Event Webhook): `post_events(events)` posts one batch to
the configured webhook URL (or `url=`), signed with ECDSA P-256 over timestamp + raw body in the
X-Twilio-Email-Event-Webhook-* headers (`signed=False`: without them); `events_for(request)`
makes one event a recipient of an accepted mail-send request; `post_accepted()` posts those for
every request accepted since the last call, in batches; `posting(every)` does that from a
background thread until its block ends. `post=` carries a batch some other way (a TestClient).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent / "contracts" / "sendgrid-mail-send.schema.json"
SETTINGS_SCHEMA_PATH = SCHEMA_PATH.with_name("sendgrid-webhook-settings.schema.json")
API_KEY = "SG.test-key-for-the-fake"
# A key made for the Settings page: mail.send plus the Event Webhook scopes (SendGrid's
# "API Key Permissions": Webhook group), and one more to show extra scopes do no harm.
FULL_SCOPES = [
    "mail.send",
    "user.webhooks.event.settings.read",
    "user.webhooks.event.settings.update",
    "alerts.read",
]
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SETTINGS_PATH = "/v3/user/webhooks/event/settings"
HOOK_ID = re.compile(r"^/v3/user/webhooks/event/settings/(signed/)?([A-Za-z0-9-]+)$")
Poster = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


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


def content_type_problems(value: str | None) -> list[str]:
    """JSON in UTF-8, as SendGrid documents (`application/json`); `charset=utf-8` is the one
    parameter allowed (SendGrid's C# client sent it to /v3/mail/send for years)."""
    media, *params = [part.strip().lower() for part in (value or "").split(";")]
    if media != "application/json" or any(p.replace(" ", "") != "charset=utf-8" for p in params):
        return [f"invalid content-type: {value}"]
    return []


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


@dataclass
class ApiCall:
    """One request to the account API (not mail-send)."""

    method: str
    path: str
    body: Any
    status: int
    problems: list[str]


@dataclass(frozen=True)
class Posted:
    """One batch of events posted to the webhook: what went and what the site answered."""

    url: str
    events: list[dict[str, Any]]
    status: int
    body: bytes


def _settings_validator(name: str) -> Draft202012Validator:
    schema = json.loads(SETTINGS_SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator({**schema, "$ref": f"#/$defs/{name}"})


def _urllib_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


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
        # the account API and the Event Webhook
        self.scopes: list[str] = list(FULL_SCOPES)
        self.api_calls: list[ApiCall] = []
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        self.hook_validator = _settings_validator("EventWebhookRequest")
        self.signed_validator = _settings_validator("SignedToggleRequest")
        self.posted: list[Posted] = []
        self.posted_upto = 0  # requests whose events post_accepted() has posted

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

    # --- account API: scopes and the Event Webhook settings -------------------------------

    @property
    def public_key(self) -> str:
        """The signing public key as SendGrid gives it: base64 DER SubjectPublicKeyInfo."""
        der = self.signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    @property
    def webhook_url(self) -> str | None:
        """The URL of the (first) enabled webhook."""
        return next((h["url"] for h in self.webhooks.values() if h.get("enabled")), None)

    def _problems(self, validator: Draft202012Validator, body: Any) -> list[str]:
        return [
            f"{'/'.join(str(p) for p in e.absolute_path) or 'body'}: {e.message}"[:300]
            for e in itertools.islice(validator.iter_errors(body), 20)
        ]

    def api(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Answer one account-API request (key already checked): (status, JSON body)."""
        problems: list[str] = []
        status, answer = self._api(method, path, body, problems)
        with self.lock:
            self.api_calls.append(ApiCall(method, path, body, status, problems))
        return status, answer

    def _api(self, method: str, path: str, body: Any, problems: list[str]) -> tuple[int, Any]:
        def bad(found: list[str]) -> tuple[int, Any]:
            problems.extend(found)
            return 400, {"errors": [{"field": None, "message": p} for p in found]}

        not_found = (404, {"errors": [{"message": "Invalid id provided."}]})
        if (method, path) == ("GET", "/v3/scopes"):
            return 200, {"scopes": list(self.scopes)}
        if (method, path) == ("GET", SETTINGS_PATH + "/all"):
            return 200, {
                "max_allowed": 5,
                "webhooks": [self._shown(h) for h in self.webhooks.values()],
            }
        if (method, path) == ("POST", SETTINGS_PATH):
            if found := self._problems(self.hook_validator, body):
                return bad(found)
            if any(h["url"] == body["url"] for h in self.webhooks.values()):
                return bad(
                    [f"Webhook at '{body['url']}' already exists. Please provide a unique URL."]
                )
            hook = {**body, "id": str(uuid.uuid4()), "signed": False}
            hook["created_date"] = hook["updated_date"] = "2027-01-04T12:00:00Z"
            self.webhooks[hook["id"]] = hook
            return 201, self._shown(hook)
        match = HOOK_ID.match(path)
        if match is None:
            return 404, {"errors": [{"field": None, "message": "not found"}]}
        signed_path, hook_id = bool(match.group(1)), match.group(2)
        hook = self.webhooks.get(hook_id)
        if hook is None:
            return not_found
        if signed_path and method == "PATCH":
            if found := self._problems(self.signed_validator, body):
                return bad(found)
            hook["signed"] = body["enabled"]
        if signed_path and method in ("GET", "PATCH"):
            return 200, {"id": hook_id, "public_key": self.public_key if hook["signed"] else ""}
        if method == "PATCH":
            if found := self._problems(self.hook_validator, body):
                return bad(found)
            hook.update(body)
        if method in ("GET", "PATCH"):
            return 200, self._shown(hook)
        return 405, {"errors": [{"field": None, "message": "method not allowed"}]}

    def _shown(self, hook: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in hook.items() if k not in ("signed", "oauth_client_secret")}
        if hook.get("signed"):
            shown["public_key"] = self.public_key
        return shown

    # --- the Event Webhook: signed batches posted to the site ------------------------------

    def signed_headers(self, raw: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.signing_key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
        }

    def post_events(
        self,
        events: list[dict[str, Any]],
        *,
        url: str | None = None,
        signed: bool = True,
        timestamp: int | None = None,
        post: Poster | None = None,
    ) -> Posted:
        """Post one batch to the webhook SendGrid was told about (or `url`), as SendGrid does."""
        target = url or self.webhook_url
        if target is None:
            raise RuntimeError("no Event Webhook is configured on the fake, and no url= given")
        raw = json.dumps(events).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "SendGrid Event API"}
        if signed:
            headers |= self.signed_headers(raw, timestamp)
        status, body = (post or _urllib_post)(target, raw, headers)
        done = Posted(target, events, status, body)
        with self.lock:
            self.posted.append(done)
        return done

    @staticmethod
    def events_for(
        request: Request, event: str = "delivered", timestamp: int | None = None
    ) -> list[dict[str, Any]]:
        """One `event` for each recipient of an accepted mail-send request, shaped as SendGrid's
        (custom_args flattened to top-level keys, sg_message_id = X-Message-Id + a suffix)."""
        stamp = int(time.time()) if timestamp is None else timestamp
        body = request.body if isinstance(request.body, dict) else {}
        shared = body.get("custom_args") or {}
        made = []
        for n, p in enumerate(body.get("personalizations") or []):
            for to in p.get("to") or []:
                made.append(
                    {
                        **shared,
                        **(p.get("custom_args") or {}),
                        "email": to["email"],
                        "timestamp": stamp,
                        "event": event,
                        "sg_event_id": uuid.uuid4().hex,
                        "sg_message_id": f"{request.message_id}.filter0001.{n}.0",
                    }
                )
        return made

    def post_accepted(
        self, event: str = "delivered", batch: int = 500, **options: Any
    ) -> list[Posted]:
        """Post `event` for every recipient of the requests accepted since the last call, in
        batches of up to `batch` events (options as post_events)."""
        with self.lock:
            fresh = [r for r in self.requests[self.posted_upto :] if r.status == 202]
            self.posted_upto = len(self.requests)
        events = [e for r in fresh for e in self.events_for(r, event)]
        return [
            self.post_events(events[i : i + batch], **options) for i in range(0, len(events), batch)
        ]

    @contextlib.contextmanager
    def posting(self, every: float = 0.2, **options: Any) -> Iterator[None]:
        """Within the block, a thread posts the accepted requests' events every `every` seconds
        (post_accepted's options); once more at the end."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every):
                self.post_accepted(**options)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.post_accepted(**options)

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

            def _account(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    with fake.lock:
                        fake.api_calls.append(ApiCall(method, self.path, body, 401, []))
                    return self._answer(
                        401, {}, {"errors": [{"field": None, "message": "authorization required"}]}
                    )
                status, answer = fake.api(method, self.path, body)
                self._answer(status, {}, answer)

            def do_GET(self) -> None:
                self._account("GET")

            def do_PATCH(self) -> None:
                self._account("PATCH")

            def do_POST(self) -> None:
                if self.path.startswith(SETTINGS_PATH):
                    return self._account("POST")
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
                problems = content_type_problems(self.headers.get("Content-Type")) + (
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
