"""SendGrid backend through the official client against the local schema-checking fake."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from paths import TESTS
from sendgrid_fake import API_KEY, FakeSendGrid

from newsletter.core.config import Settings, load_settings
from newsletter.core.identity import fingerprint
from newsletter.mail import backends as delivery
from newsletter.mail import render
from newsletter.mail.backends.sendgrid import (
    BACKOFF,
    JSON_UTF8,
    SendGridBackend,
    chunks,
    encode_body,
)
from newsletter.mail.message import (
    ARTICLE,
    CONFIRMATION,
    YOUR_DATA,
    Accepted,
    Attachment,
    Failed,
    Message,
    Recipient,
    RetryLater,
    SendingHalted,
    Unknown,
)


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def sg_settings(settings: Settings, host: str, key: str = API_KEY, **extra: object) -> Settings:
    return load_settings(
        **{
            **settings.model_dump(),
            "mail_backend": "sendgrid",
            "sendgrid_api_key": key,
            "sendgrid_host": host,
            **extra,
        }
    )


def article(**kw: object) -> Message:
    values: dict[str, object] = {
        "kind": ARTICLE,
        "subject": "Myth 1: therapy is only for a crisis",
        "html": f"<p>{render.GREETING_HTML}</p><p>Body</p><a href='{render.UNSUBSCRIBE_URL}'>unsubscribe</a>",
        "text": f"{render.GREETING}\n\nBody\n\nUnsubscribe: {render.UNSUBSCRIBE_URL}\n",
        "preheader": "why waiting costs",
        "series": "common-myths",
        "part": 1,
        "categories": ("series:common-myths", "article"),
    }
    values.update(kw)
    return Message(**values)  # type: ignore[arg-type]


def people(n: int, start: int = 0) -> list[Recipient]:
    out = []
    for i in range(start, start + n):
        url = f"https://news.example.org/unsubscribe/tok{i}"
        name = f"Reader {i}" if i % 3 else None
        out.append(
            Recipient(
                delivery_id=str(i + 1),
                email=f"reader{i}@example.net",
                name=name,
                unsubscribe_url=url,
                values=render.personal_values(
                    name=name,
                    unsubscribe_url=url,
                    preferences_url=f"https://news.example.org/preferences/p{i}",
                ),
            )
        )
    return out


def test_2500_recipients_make_three_valid_requests(settings: Settings, fake: FakeSendGrid) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    recipients = people(2500)
    outcomes = backend.send(article(), recipients)

    assert fake.problems == []
    assert [len(r.body["personalizations"]) for r in fake.requests] == [1000, 1000, 500]
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in fake.requests)
    assert all(isinstance(o, Accepted) and o.message_id for o in outcomes)
    # every recipient in exactly one request, once, with their own message id
    sent = Counter(e for r in fake.requests for e in r.emails)
    assert len(sent) == 2500 and set(sent.values()) == {1}
    assert len({o.message_id for o in outcomes if isinstance(o, Accepted)}) == 3

    by_id = {r.delivery_id: r for r in recipients}
    for request in fake.requests:
        body = request.body
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert body["reply_to"] == {"email": settings.reply_to}
        assert body["categories"] == ["series:common-myths", "article"]
        assert body["tracking_settings"]["open_tracking"] == {"enable": False}
        assert body["tracking_settings"]["click_tracking"]["enable"] is False
        assert body["mail_settings"]["sandbox_mode"] == {"enable": False}
        assert render.GREETING in body["content"][0]["value"]  # rendered once, not per person
        for p in body["personalizations"]:
            assert len(p["to"]) == 1
            args = p["custom_args"]
            assert set(args) >= {"delivery_id", "series", "part"}
            assert all(isinstance(v, str) for v in args.values())
            assert (args["series"], args["part"]) == ("common-myths", "1")
            who = by_id[args["delivery_id"]]
            assert p["to"][0]["email"] == who.email
            assert p["headers"] == {
                "List-Unsubscribe": f"<{who.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
            assert p["substitutions"][render.UNSUBSCRIBE_URL] == who.unsubscribe_url
            assert p["substitutions"][render.GREETING] == who.values[render.GREETING]
            assert render.CONFIRM_URL not in p["substitutions"]  # only placeholders in use


def test_tracking_sandbox_and_non_article_mail(settings: Settings, fake: FakeSendGrid) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url, tracking="on"))
    msg = article(kind=CONFIRMATION, series=None, part=None, sandbox=True, categories=())
    outcomes = backend.send(msg, people(2))
    assert fake.problems == [] and [r.status for r in fake.requests] == [200]
    assert all(isinstance(o, Accepted) for o in outcomes)
    body = fake.requests[0].body
    assert body["mail_settings"]["sandbox_mode"] == {"enable": True}
    assert body["tracking_settings"]["open_tracking"] == {"enable": True}
    assert body["tracking_settings"]["click_tracking"]["enable"] is True
    assert "categories" not in body
    for p in body["personalizations"]:
        assert "series" not in p["custom_args"] and "part" not in p["custom_args"]


def test_an_attachment_goes_as_documented(settings: Settings, fake: FakeSendGrid) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    data = Attachment("your-data.json", "application/json", b'{"name": "Ana"}')
    msg = article(kind=YOUR_DATA, series=None, part=None, categories=(), attachments=(data,))
    assert all(isinstance(o, Accepted) for o in backend.send(msg, people(1)))
    assert fake.problems == []  # the documented mail-send schema holds
    [sent] = fake.requests[0].body["attachments"]
    assert sent == {
        "content": base64.b64encode(b'{"name": "Ana"}').decode(),
        "type": "application/json",
        "filename": "your-data.json",
        "disposition": "attachment",
    }


def test_429_then_202_sends_each_recipient_once(
    settings: Settings, fake: FakeSendGrid, time_machine: Any
) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    recipients = people(1500)
    reset = int(time.time()) + 120
    fake.rate_limit(reset_at=reset)
    first = backend.send(article(), recipients)
    assert len(fake.requests) == 1  # after a 429 the rest of the batch is not tried now
    assert all(isinstance(o, RetryLater) for o in first)
    assert {o.at for o in first if isinstance(o, RetryLater)} == {
        dt.datetime.fromtimestamp(reset, dt.UTC)
    }
    again = [r for r, o in zip(recipients, first, strict=True) if isinstance(o, RetryLater)]
    # the 429's X-RateLimit-Remaining: 0 holds every sender (throttle) until the reset: no request
    held = backend.send(article(), again)
    assert len(fake.requests) == 1
    assert {o.at for o in held if isinstance(o, RetryLater)} == {
        dt.datetime.fromtimestamp(reset, dt.UTC)
    }
    time_machine.move_to(dt.datetime.fromtimestamp(reset, dt.UTC), tick=True)
    second = backend.send(article(), again)
    assert all(isinstance(o, Accepted) for o in second)
    accepted = Counter(e for r in fake.accepted for e in r.emails)
    assert len(accepted) == 1500 and set(accepted.values()) == {1}
    assert fake.problems == []


def test_429_without_reset_header_backs_off(settings: Settings, fake: FakeSendGrid) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    fake.rate_limit(reset_at=None)
    before = dt.datetime.now(dt.UTC)
    [outcome] = backend.send(article(), people(1))
    assert isinstance(outcome, RetryLater) and outcome.at > before


def test_5xx_retries_later_with_growing_capped_backoff(
    settings: Settings, fake: FakeSendGrid
) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    BACKOFF.reset()  # the backoff is per process: earlier tests may have grown it
    delays = []
    for _ in range(12):
        fake.server_error(503)
        start = dt.datetime.now(dt.UTC)
        [outcome] = backend.send(article(), people(1))
        assert isinstance(outcome, RetryLater) and "503" in outcome.reason
        delays.append((outcome.at - start).total_seconds())
    assert delays[0] <= 31 and delays[5] > delays[0] and max(delays) <= 3601
    [ok] = backend.send(article(), people(1))  # success resets the backoff
    assert isinstance(ok, Accepted)
    fake.server_error(500)
    [outcome] = backend.send(article(), people(1))
    assert isinstance(outcome, RetryLater)
    assert (outcome.at - dt.datetime.now(dt.UTC)).total_seconds() <= 31


def test_400_fails_with_sendgrid_error_text(settings: Settings, fake: FakeSendGrid) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    fake.bad_request("The from address does not match a verified Sender Identity.", "from")
    outcomes = backend.send(article(), people(3))
    assert all(isinstance(o, Failed) for o in outcomes)
    assert "does not match a verified Sender Identity" in outcomes[0].reason  # type: ignore[union-attr]
    assert len(fake.requests) == 1


def test_400_naming_one_personalization_fails_only_that_recipient(
    settings: Settings, fake: FakeSendGrid
) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    fake.bad_request("Does not contain a valid address.", "personalizations.1.to.0.email")
    outcomes = backend.send(article(), people(3))
    assert isinstance(outcomes[1], Failed) and "valid address" in outcomes[1].reason
    assert isinstance(outcomes[0], Accepted) and isinstance(outcomes[2], Accepted)
    assert fake.accepted[0].emails == ["reader0@example.net", "reader2@example.net"]


def test_error_reasons_naming_an_address_are_scrubbed(
    settings: Settings, fake: FakeSendGrid
) -> None:
    """A reason is stored on the delivery and logged: SendGrid's text can quote the recipient."""
    backend = SendGridBackend(sg_settings(settings, fake.url))
    fake.bad_request("reader1@example.net is on the bounce list", "personalizations.1.to.0.email")
    outcomes = backend.send(article(), people(3))
    assert isinstance(outcomes[1], Failed)
    assert outcomes[1].reason.endswith("<address> is on the bounce list")
    fake.bad_request("Invalid email <reader0@example.net>", None)
    for outcome in backend.send(article(), people(2)):
        assert isinstance(outcome, Failed) and outcome.reason.endswith("Invalid email <address>")


@pytest.mark.slow  # waits out a 3 s client timeout
def test_timeout_after_the_request_went_out_is_unknown_not_retry(
    settings: Settings, fake: FakeSendGrid
) -> None:
    # 3 s, not 0.5 s: the stand-in checks a 1,000-recipient body against the schema before it
    # records and hangs, which took over 0.5 s on a loaded 2-core machine
    backend = SendGridBackend(sg_settings(settings, fake.url), timeout=3)
    fake.hang(60)  # answers at shutdown at the latest
    outcomes = backend.send(article(), people(1500))
    # the first request was sent whole: SendGrid may have it; the second was never tried
    assert all(isinstance(o, Unknown) for o in outcomes[:1000])
    assert "timed out" in outcomes[0].reason or "Timeout" in outcomes[0].reason  # type: ignore[union-attr]
    assert all(isinstance(o, RetryLater) for o in outcomes[1000:])
    deadline = time.monotonic() + 30  # the stand-in records once it has checked the body
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake.requests) == 1


def _drops_after_reading() -> tuple[str, threading.Thread, list[bytes]]:
    """A server that reads one whole request, then closes the connection without answering
    (as if SendGrid accepted it and the reply was lost)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    bodies: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            bodies.append(body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread, bodies


def test_connection_closed_after_the_request_is_unknown(settings: Settings) -> None:
    url, thread, bodies = _drops_after_reading()
    backend = SendGridBackend(sg_settings(settings, url))
    outcomes = backend.send(article(), people(3))
    thread.join(timeout=10)
    assert len(bodies) == 1 and b"reader2@example.net" in bodies[0]  # the request arrived whole
    assert all(isinstance(o, Unknown) for o in outcomes)
    assert "no answer" in outcomes[0].reason  # type: ignore[union-attr]


def test_connection_refused_is_retry_later(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = SendGridBackend(sg_settings(settings, f"http://127.0.0.1:{port}"))
    outcomes = backend.send(article(), people(2))
    assert all(isinstance(o, RetryLater) for o in outcomes)


def test_401_raises_sending_halted_naming_the_refused_key(
    settings: Settings, fake: FakeSendGrid
) -> None:
    """The provider only reports the refusal (with the key's fingerprint, never the key); the
    engine records the halt in the store (test_delivery_flow). No SQL in the provider."""
    wrong = SendGridBackend(sg_settings(settings, fake.url, key="SG.wrong"))
    with pytest.raises(SendingHalted) as caught:
        wrong.send(article(), people(1500))
    assert caught.value.outcomes == []
    assert "401" in caught.value.reason and "SG.wrong" not in caught.value.reason
    assert caught.value.fingerprint == fingerprint("SG.wrong")
    assert len(fake.requests) == 1 and fake.requests[0].status == 401


def test_403_halts_and_keeps_outcomes_already_known(settings: Settings, fake: FakeSendGrid) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    fake.then(202).unauthorized(403)
    with pytest.raises(SendingHalted) as caught:
        backend.send(article(), people(1200))
    assert len(caught.value.outcomes) == 1000
    assert all(isinstance(o, Accepted) for o in caught.value.outcomes)
    assert isinstance(backend.send(article(), people(1))[0], Accepted)


def test_chunks_never_repeat_an_address_in_one_request() -> None:
    recipients = [*people(3), Recipient("x", "READER1@example.net", None, "https://u/x")]
    groups = chunks(recipients, size=1000)
    assert groups == [[0, 1, 2], [3]]
    assert [len(g) for g in chunks(people(2001))] == [1000, 1000, 1]


def test_get_backend_by_name(settings: Settings, fake: FakeSendGrid) -> None:
    assert delivery.get_backend(sg_settings(settings, fake.url)).name == "sendgrid"
    assert delivery.get_backend(settings).name == "outbox"
    with pytest.raises(ValueError, match="unknown mail backend"):
        delivery.get_backend(settings, "pigeon")


def test_no_addresses_or_key_in_debug_logs(
    settings: Settings, fake: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    SendGridBackend(sg_settings(settings, fake.url)).send(article(), people(3))
    fake.bad_request("nope")
    SendGridBackend(sg_settings(settings, fake.url)).send(article(), people(3))
    assert "@example.net" not in caplog.text and API_KEY not in caplog.text


@pytest.mark.slow  # the stand-in in a child process
def test_fake_runs_as_its_own_process(settings: Settings) -> None:
    import json
    import subprocess
    import sys

    script = TESTS / "sendgrid_fake.py"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        outcomes = SendGridBackend(sg_settings(settings, url)).send(article(), people(1200))
        assert all(isinstance(o, Accepted) for o in outcomes)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert json.loads(out.strip().splitlines()[-1]) == {
        "requests": 2,
        "recipients": 1200,
        "problems": [],
    }


def test_the_body_goes_out_as_utf8_json_with_the_values_json_dumps_wrote(
    settings: Settings, fake: FakeSendGrid
) -> None:
    """orjson encodes the request (issue 26): the stand-in, checking the schema, reads the same
    values the client's json.dumps sent before, non-ASCII text included, under a header that
    says UTF-8 (the client re-encodes a body itself only for a bare application/json)."""
    backend = SendGridBackend(sg_settings(settings, fake.url))
    message = article(subject="Ça va — “quotes” and 😀", text="Grüße\n\u2028 tab\t end")
    recipients = people(4)
    recipients[1] = dataclasses.replace(recipients[1], name="Zoë «Ünïcode» 😀")
    outcomes = backend.send(message, recipients)
    assert fake.problems == [] and all(isinstance(o, Accepted) for o in outcomes)
    (request,) = fake.requests
    assert request.headers["Content-Type"] == JSON_UTF8
    assert request.body == json.loads(json.dumps(backend.build_body(message, recipients)))
    assert request.body["personalizations"][1]["to"][0]["name"] == "Zoë «Ünïcode» 😀"


def test_encoded_bodies_read_back_as_json_dumps_wrote_them() -> None:
    body = {"a": ["é", 1, True, None, {"b": '😀\u2028\x00"</script>'}], "c": 1.5}
    assert json.loads(encode_body(body)) == json.loads(json.dumps(body)) == body
    lone = {"name": "\ud800"}  # orjson refuses a lone surrogate: json.dumps's escaped text
    assert encode_body(lone) == json.dumps(lone)


def test_a_request_s_personalizations_clean_what_each_reader_gives(
    settings: Settings, fake: FakeSendGrid
) -> None:
    backend = SendGridBackend(sg_settings(settings, fake.url))
    message = article()
    recipients = people(4)
    recipients[0] = dataclasses.replace(recipients[0], name=" Doe,  Jane;\tX ", delivery_id="7")
    recipients[1] = dataclasses.replace(recipients[1], name="", unsubscribe_url="")
    recipients[2] = dataclasses.replace(recipients[2], email="  spaced@example.net ")
    recipients[3] = dataclasses.replace(recipients[3], values={render.GREETING: "Hi,"})
    first, second, third, fourth = backend.build_body(message, recipients)["personalizations"]
    assert first["to"] == [{"email": recipients[0].email, "name": "Doe Jane X"}]
    assert first["custom_args"] == {
        "delivery_id": "7", "kind": message.kind, "series": message.series,
        "part": str(message.part),
    }  # fmt: skip
    assert list(first) == ["to", "custom_args", "headers", "substitutions"]  # the keys' order
    assert second["to"] == [{"email": recipients[1].email}] and "headers" not in second
    assert third["to"][0]["email"] == "spaced@example.net"
    assert fourth["substitutions"][render.GREETING] == "Hi,"
    assert backend.personalization(message, recipients[0], list(first["substitutions"])) == first
