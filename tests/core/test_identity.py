"""core.identity: the one subscriber rule set (each drift between roster and subscribers fixed
to the stricter rule), and the behaviour those fixes show through services and the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from email import policy
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sendgrid_fake import API_KEY, FakeSendGrid
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.content import series as content
from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.engine import series_queue
from newsletter.mail import render
from newsletter.queue.dueset import RedisQueue
from newsletter.services import mailing, roster, signup
from newsletter.store import halt as halts
from newsletter.store import series as series_store
from newsletter.store.db import session_scope
from newsletter.store.models import Enrollment, Part, Series, Subscriber

runner = CliRunner()
SLUG = "myths-about-psychotherapy"


# --- the rules -----------------------------------------------------------------------------


def test_address_is_stored_normalised_by_every_way_in(settings: Settings) -> None:
    """Drift: roster stored the stripped address, signup the normalised one. Now both normalise."""
    assert identity.normalise_email("  Ann.Lee@Example.ORG ") == "Ann.Lee@example.org"
    roster.add_subscriber(settings, email=" Ann.Lee@Example.ORG ")
    with session_scope(settings.database_url) as session:
        sub = session.scalars(select(Subscriber)).one()
        assert (sub.email, sub.email_key) == ("Ann.Lee@example.org", "ann.lee@example.org")
        assert roster.find(session, "ANN.LEE@EXAMPLE.ORG") is sub


@pytest.mark.parametrize("bad", ["", " ", "ann", "a\x00b@example.org", "a@b.org\nBcc: c@d.org"])
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        identity.normalise_email(bad)


@pytest.mark.parametrize("name", ["Ann\x00", "Ann\x07Lee", "Ann\x1bLee", "Ann\x7f", "Ann\x9bLee"])
def test_control_characters_in_a_name_are_refused_everywhere(name: str) -> None:
    """Drift: signup stripped control characters from names, roster refused them. Now refused."""
    with pytest.raises(ValueError, match="control"):
        identity.clean_name(name)
    with pytest.raises(signup.InvalidInput) as caught:
        signup.clean_name(name)
    assert "control" in caught.value.errors["name"]


def test_names_collapse_whitespace_and_keep_their_letters() -> None:
    assert identity.clean_name("  Ann \t\n Lee ") == "Ann Lee"
    assert identity.clean_name("Zoë 🙂") == "Zoë 🙂"
    assert identity.clean_name("   ") is None
    with pytest.raises(ValueError):
        identity.clean_name("x" * (identity.NAME_MAX + 1))


def test_one_public_id_format_and_old_ids_still_found(settings: Settings) -> None:
    """Drift: token_urlsafe(18) in roster, token_hex(16) in signup. Now one format; a row made
    with the old format still opens its links (lookups are by stored value)."""
    ids = {identity.new_public_id() for _ in range(200)}
    assert len(ids) == 200 and all(identity.PUBLIC_ID.fullmatch(i) for i in ids)
    sub_id = roster.add_subscriber(settings, email="old@example.org")
    old = "0123456789abcdef0123456789abcdef"  # token_hex(16), as signup made them
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, sub_id)
        assert sub is not None and identity.PUBLIC_ID.fullmatch(sub.public_id)
        sub.public_id = old
    from newsletter.services import people

    with session_scope(settings.database_url) as session:
        assert people.by_public_id(session, old) is not None


def test_email_hash_is_the_suppression_key() -> None:
    expected = hashlib.sha256(b"ann@example.org").hexdigest()
    assert identity.email_hash(" Ann@Example.org ") == expected


# --- behaviour: unsubscribe drops the queue, from the CLI too ------------------------------


def test_cli_unsubscribe_drops_the_queue(settings: Settings) -> None:
    """Drift: roster.unsubscribe said it dropped the queue and did not; admin and API synced
    afterwards, the CLI did not (the Redis entry stayed until the tick skipped it)."""
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
    now = dt.datetime.now(dt.UTC)
    with session_scope(settings.database_url) as session:
        series_queue.queue_series(session, SLUG, None, now)
    sub_id = roster.add_subscriber(settings, email="q@example.org", confirmed=True, now=now)
    queue = RedisQueue(settings)
    with session_scope(settings.database_url) as session:
        ids = list(session.scalars(select(Enrollment.id).where(Enrollment.subscriber_id == sub_id)))
    assert ids and any(queue.redis.zscore(queue.due_key, str(i)) is not None for i in ids)
    result = runner.invoke(app, ["subscribers", "unsubscribe", "Q@example.org"])
    assert result.exit_code == 0, result.output
    assert all(queue.redis.zscore(queue.due_key, str(i)) is None for i in ids)


# --- behaviour: non-article mail through services.mailing ----------------------------------


def test_a_confirmation_while_halted_is_not_sent_and_says_so(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        halts.halt(session, "the provider refused the API key")
    sub_id = roster.add_subscriber(settings, email="h@example.org")
    assert not settings.outbox_dir.exists() or os.listdir(settings.outbox_dir) == []
    done = mailing.send_confirmations(settings, [sub_id])
    assert done.sent == 0 and done.failed == 1
    assert done.halted == "the provider refused the API key"
    assert not settings.outbox_dir.exists() or os.listdir(settings.outbox_dir) == []


def test_a_401_on_a_confirmation_records_the_halt_with_the_keys_fingerprint(
    sg: tuple[Settings, FakeSendGrid],
) -> None:
    settings, fake = sg
    fake.unauthorized()
    sub_id = roster.add_subscriber(settings, email="k@example.org")  # its confirmation: 401
    with session_scope(settings.database_url) as session:
        recorded = halts.halted(session, settings)
    assert recorded is not None and recorded.fingerprint == identity.fingerprint(API_KEY)
    before = len(fake.requests)
    done = mailing.send_confirmations(settings, [sub_id])  # halted: the provider is not called
    assert done.halted is not None and done.sent == 0 and len(fake.requests) == before


# --- behaviour: one test send for the admin page and the CLI -------------------------------


def _article(settings: Settings, number: int = 1) -> object:
    with session_scope(settings.database_url) as session:
        series = session.scalar(select(Series).where(Series.slug == SLUG))
        assert series is not None
        parts = list(session.scalars(select(Part).where(Part.series_id == series.id)))
        part = next(p for p in parts if p.number == number)
        return render.Renderer(settings).article(series, part, len(parts))


def test_admin_and_cli_test_sends_validate_and_categorise_the_same(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        series_store.sync(session, content.load_all(settings.schedules_dir))
    bad = "a@b.org\nBcc: c@d.org"
    result = mailing.send_test(settings, bad, _article(settings))  # type: ignore[arg-type]
    assert result.status == mailing.INVALID
    cli = runner.invoke(app, ["send-test", SLUG, "1", "--to", bad])
    assert cli.exit_code == 1 and "one email address" in cli.output
    result = mailing.send_test(settings, "me@example.org", _article(settings))  # type: ignore[arg-type]
    assert result.status == mailing.SENT
    cli = runner.invoke(app, ["send-test", SLUG, "1", "--to", "me@example.org"])
    assert cli.exit_code == 0, cli.output
    mails = [
        BytesParser(policy=policy.default).parsebytes(p.read_bytes())
        for p in sorted(settings.outbox_dir.glob("*.eml"))
    ]
    assert len(mails) == 2
    assert {m["Subject"] for m in mails} == {mails[0]["Subject"]}  # the same message both ways
    with session_scope(settings.database_url) as session:
        halts.halt(session, "refused key")
    assert mailing.send_test(settings, "me@example.org", _article(settings)).status == (  # type: ignore[arg-type]
        mailing.HALTED
    )
    cli = runner.invoke(app, ["send-test", SLUG, "1", "--to", "me@example.org"])
    assert cli.exit_code == 1 and "halted" in cli.output
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 2


# --- the plain-address fast path agrees with email_validator ---------------------------------

_ATOM = "abcXYZ019_!#$%&'*+-/=?^`{|}~"
_PLAIN_CHARS = _ATOM + '.@ "()[]<>,;:\\'


def _full(value: str) -> str | None:
    """What email_validator alone says (None: refused)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return str(validate_email(value.strip(), check_deliverability=False).normalized)
    except EmailNotValidError:
        return None


def _ours(value: str) -> str | None:
    try:
        return identity.normalise_email(value)
    except ValueError:
        return None


_DOMAINS = st.sampled_from(
    [
        "example.org",
        "Example.ORG",
        "mail.example.co.uk",
        "localhost",
        "x.test",
        "1.2.3.4",
        "[1.2.3.4]",
        "-bad.org",
        "bad-.org",
        "a..b.org",
        "xn--mnchen-3ya.de",
        "münchen.de",
        "x.123",
        "a" * 64 + ".org",
        ("a" * 60 + ".") * 4 + "org",
        "",
        "exa mple.org",
    ]
)


@given(local=st.text(alphabet=_PLAIN_CHARS, max_size=70), domain=_DOMAINS)
def test_the_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    value = f"{local}@{domain}"
    if len(value) > identity.EMAIL_MAX:
        return  # refused before either looks at it
    assert _ours(value) == _full(value), value


@pytest.mark.parametrize(
    "value",
    [
        "Reader.X+tag@Example.ORG",
        "a..b@example.org",
        ".a@example.org",
        "a.@example.org",
        "a@localhost",
        "a@x.test",
        "a@xn--mnchen-3ya.de",
        "o'neil@example.org",
        "x" * 64 + "@example.org",
        "x" * 65 + "@example.org",
        "a@b@example.org",
        '"quoted"@example.org',
    ],
)
def test_the_fast_path_agrees_on_edge_addresses(value: str) -> None:
    assert _ours(value) == _full(value)


def test_public_ids_made_in_bulk_have_the_one_format_and_differ() -> None:
    ids = identity.new_public_ids(1000)
    assert len(ids) == 1000 == len(set(ids))
    assert all(identity.PUBLIC_ID.fullmatch(i) for i in ids)
    assert identity.new_public_ids(0) == []
