"""Every email that is not a ledger article: confirmations, welcomes and test sends, through one door.

`deliver` is that door: recipients come from `mail.recipient.recipient` (the builder the engine
uses for articles), nothing goes out while sending is halted (`store.halt.halted`), and a
provider refusing our key (`SendingHalted`) records the halt with the refused key's fingerprint,
as the engine does for articles.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.mail import render
from newsletter.mail.backends import get_backend
from newsletter.mail.message import (
    CONFIRMATION,
    TEST,
    Accepted,
    Failed,
    Message,
    Outcome,
    Recipient,
    SendingHalted,
)
from newsletter.mail.recipient import recipient
from newsletter.services.people import Someone
from newsletter.store.db import session_scope
from newsletter.store.halt import halt, halted
from newsletter.store.models import ACTIVE, PENDING, UNSUBSCRIBED, Subscriber

log = logging.getLogger(__name__)

TEST_HOLDER = "send-test"  # the public id behind a test's links: they lead to "not found"

# Who gets what they ask for on a preference page ("your data", "send this one again"): readers
# who are or were subscribed. A complained (marked as spam), bounced or erased address gets
# nothing; the page is the same either way (the check runs after the response).
ON_REQUEST_STATUSES = (ACTIVE, UNSUBSCRIBED)


def mail_on_request(subscriber: Someone) -> bool:
    """Whether mail this reader asked for on a preference page may go to them."""
    return subscriber.status in ON_REQUEST_STATUSES


@dataclass(frozen=True)
class Sent:
    """What one `deliver` did: an outcome per recipient, and why nothing went out if halted."""

    outcomes: list[Outcome]
    halted: str | None = None  # the halt's reason when sending is (or just became) halted

    @property
    def sent(self) -> int:
        return sum(1 for o in self.outcomes if isinstance(o, Accepted))

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.sent


def deliver(settings: Settings, message: Message, recipients: Sequence[Recipient]) -> Sent:
    """Send `message` to `recipients` unless sending is halted; record a halt on a refused key.

    Raises ValueError when the backend is not configured (missing key or SMTP URL)."""
    if not recipients:
        return Sent([])
    with session_scope(settings.database_url) as session:
        current = halted(session, settings)
    if current is not None:
        log.warning("%s email not sent: sending is halted (%s)", message.kind, current.reason)
        return Sent([_halted(current.reason)] * len(recipients), current.reason)
    try:
        outcomes = get_backend(settings).send(message, recipients)
    except SendingHalted as exc:
        with session_scope(settings.database_url) as session:
            halt(session, exc.reason, exc.fingerprint, exc.kind)
        log.error("%s email refused: sending is now halted (%s)", message.kind, exc.reason)
        rest = [_halted(exc.reason)] * (len(recipients) - len(exc.outcomes))
        return Sent([*exc.outcomes, *rest], exc.reason)
    for outcome in outcomes:
        if not isinstance(outcome, Accepted):
            log.warning("%s email not accepted: %s", message.kind, outcome)
    return Sent(list(outcomes))


def _halted(reason: str) -> Failed:
    return Failed(f"sending is halted: {reason}")


def personal(settings: Settings, subscriber: Someone, kind: str) -> Recipient:
    """The recipient for one subscriber's non-article email (a confirmation carries its link)."""
    return recipient(
        settings,
        f"{kind}-{secrets.token_hex(8)}",
        subscriber.public_id,
        subscriber.email,
        subscriber.name,
        confirm=kind == CONFIRMATION,
    )


# --- confirmations and welcomes ------------------------------------------------------------


def send_confirmation(settings: Settings, subscriber: Someone) -> Sent:
    """Send the double opt-in email now (not at the next tick)."""
    message = render.Renderer(settings).confirmation()
    return deliver(settings, message, [personal(settings, subscriber, CONFIRMATION)])


def send_already_subscribed(settings: Settings, subscriber: Someone) -> Sent:
    """Tell an active reader their address was entered on the signup form again."""
    message = render.Renderer(settings).already_subscribed()
    return deliver(settings, message, [personal(settings, subscriber, message.kind)])


def send_confirmations(settings: Settings, subscriber_ids: Sequence[int]) -> Sent:
    """Send the double opt-in email to each of these people still pending, rendered once."""
    if not subscriber_ids:
        return Sent([])
    message = render.Renderer(settings).confirmation()
    outcomes: list[Outcome] = []
    reason: str | None = None
    with session_scope(settings.database_url) as session:
        for start in range(0, len(subscriber_ids), settings.batch_size):
            chunk = list(subscriber_ids[start : start + settings.batch_size])
            people = session.scalars(
                select(Subscriber).where(Subscriber.id.in_(chunk), Subscriber.status == PENDING)
            )
            recipients = [personal(settings, sub, CONFIRMATION) for sub in people]
            session.expunge_all()
            done = deliver(settings, message, recipients)
            outcomes += done.outcomes
            reason = reason or done.halted
    return Sent(outcomes, reason)


def send_welcome(
    settings: Settings,
    subscriber: Someone,
    first_article: str | None,
    series_titles: Sequence[str] = (),
) -> Sent:
    """Send the welcome email naming when the first article arrives."""
    text = first_article or "when the next series starts"
    message = render.Renderer(settings).welcome(text, tuple(series_titles))
    return deliver(settings, message, [personal(settings, subscriber, message.kind)])


# --- test sends ----------------------------------------------------------------------------

# What a test send can come to; the admin page and `newsletter send-test` say each the same way.
SENT, INVALID, UNCONFIGURED, HALTED, REFUSED, LATER = (
    "sent",
    "invalid",
    "unconfigured",
    "halted",
    "refused",
    "later",
)


@dataclass(frozen=True)
class TestSend:
    """The result of one test send: `status` is one of the categories above."""

    status: str
    detail: str  # a sentence for the therapist (the address is never repeated)
    backend: str
    message_id: str | None = None

    __test__ = False  # not a pytest class

    @property
    def ok(self) -> bool:
        return self.status == SENT


def test_message(article: Message, *, sandbox: bool = False) -> Message:
    """An article as a test: "[Test]" subject, a "test" category, no series or part (a test is
    not a ledger delivery), SendGrid sandbox mode on request."""
    return dataclasses.replace(
        article,
        kind=TEST,
        subject=f"[Test] {article.subject}",
        series=None,
        part=None,
        sandbox=sandbox,
        categories=(*article.categories, "test")[:10],
    )


def send_test(settings: Settings, to: str, article: Message, *, sandbox: bool = False) -> TestSend:
    """Send one article, marked [Test], to one address; the links in it lead nowhere."""
    backend = settings.mail_backend
    try:
        address = identity.normalise_email(to)
    except ValueError as exc:
        return TestSend(INVALID, f"the address is not one email address ({exc})", backend)
    target = recipient(settings, f"test-{secrets.token_hex(8)}", TEST_HOLDER, address, None)
    try:
        done = deliver(settings, test_message(article, sandbox=sandbox), [target])
    except ValueError as exc:  # backend not configured
        return TestSend(UNCONFIGURED, str(exc), backend)
    [outcome] = done.outcomes
    if done.halted is not None:
        return TestSend(HALTED, f"sending is halted: {done.halted}", backend)
    if isinstance(outcome, Accepted):
        return TestSend(SENT, f"sent through {backend}", backend, outcome.message_id)
    if isinstance(outcome, Failed):
        return TestSend(REFUSED, f"refused: {outcome.reason}", backend)
    return TestSend(LATER, f"not sent, try again later: {outcome.reason}", backend)
