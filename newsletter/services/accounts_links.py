"""Links that let someone in: the first-run setup link, invitations and password resets.

- The setup link (/admin/setup/<token>) is a random token shown by `newsletter init` and
  `newsletter admin setup-link`; only its SHA-256 and when it was made are stored (app_state), it
  works for SETUP_HOURS and once: making the owner spends it, and a new one replaces the old.
- Invitations (/admin/invite/<token>) and resets (/admin/reset/<token>) are signed tokens
  (core/tokens.py, 30 minutes) naming the account and a digest of its password hash and session
  generation: setting the password changes both, so each link works once. Sending an
  invitation again moves the generation on too, so only the newest invitation works (REPLACED).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.core.timing import utcnow
from newsletter.mail.message import Message, Recipient
from newsletter.services import mailing
from newsletter.store import accounts as store
from newsletter.store.models import Account, AppState

SETUP_KEY = "admin_setup_link"
SETUP_HOURS = 24
INVITE, RESET = "invite", "reset"
ACCOUNT_MAIL = "account"  # the kind of an invitation or reset email

# What opening a link came to: FINE, or why not (each page says what to do next).
FINE, USED, EXPIRED, INVALID = "fine", "used", "expired", "invalid"
REPLACED = "replaced"  # an invitation sent again: the older link stops working


def _digest(token: str) -> str:
    return hashlib.sha256(f"newsletter.setup:{token}".encode()).hexdigest()


# --- the setup link --------------------------------------------------------------------------


def new_setup_link(settings: Settings, session: Session) -> str | None:
    """A fresh setup link (the previous one stops working); None once an owner exists."""
    if store.owner_exists(session):
        return None
    token = secrets.token_urlsafe(24)
    value = f"{_digest(token)} {utcnow().isoformat()}"
    row = session.get(AppState, SETUP_KEY)
    if row is None:
        session.add(AppState(key=SETUP_KEY, value=value))
    else:
        row.value = value
    session.flush()
    return f"{settings.public_url.rstrip('/')}/admin/setup/{token}"


def setup_state(session: Session, token: str, now: dt.datetime | None = None) -> str:
    """FINE, USED (an owner exists), EXPIRED (older than SETUP_HOURS) or INVALID (unknown or
    replaced by a newer link)."""
    if store.owner_exists(session):
        return USED
    row = session.get(AppState, SETUP_KEY)
    if row is None or " " not in row.value:
        return INVALID
    digest, made = row.value.split(" ", 1)
    if not hmac.compare_digest(digest, _digest(token)):
        return INVALID
    age = (now or utcnow()) - dt.datetime.fromisoformat(made)
    return EXPIRED if age > dt.timedelta(hours=SETUP_HOURS) else FINE


def spend_setup_link(session: Session) -> None:
    row = session.get(AppState, SETUP_KEY)
    if row is not None:
        session.delete(row)
        session.flush()


# --- invitations and resets ------------------------------------------------------------------


def _state_of(settings: Settings, account: Account) -> str:
    """A digest of the account's password hash and generation: it changes once the link is used."""
    source = f"{account.password_hash or 'invited'}\0{account.generation}"
    key = f"newsletter.account-link:{settings.secret}".encode()
    return hmac.new(key, source.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def make_link(settings: Settings, purpose: str, account: Account) -> str:
    token = tokens.make_token(
        settings.secret, purpose, f"{account.id}:{_state_of(settings, account)}"
    )
    return f"{settings.public_url.rstrip('/')}/admin/{purpose}/{token}"


@dataclass(frozen=True)
class Opened:
    """What an invitation or reset link came to: `state` and, when FINE, its account."""

    state: str
    account: Account | None = None


def open_link(settings: Settings, session: Session, purpose: str, token: str) -> Opened:
    try:
        value = tokens.read_token(settings.secret, purpose, token)
    except tokens.TokenError as exc:
        return Opened(EXPIRED if exc.expired else INVALID)
    account_id, _, state = value.partition(":")
    account = store.by_id(session, int(account_id)) if account_id.isdigit() else None
    if account is None:
        return Opened(INVALID)
    if not hmac.compare_digest(state, _state_of(settings, account)):
        waiting = purpose == INVITE and account.password_hash is None
        return Opened(REPLACED if waiting else USED)
    if purpose == INVITE and account.password_hash is not None:
        return Opened(USED)
    return Opened(FINE, account)


# --- the emails --------------------------------------------------------------------------------

_WORDS = {
    INVITE: (
        "You're invited to the admin of {practice}",
        "{inviter} invited you to help with {practice}'s newsletter.",
        "Choose your password",
    ),
    RESET: (
        "Reset your password for {practice}",
        "Someone (hopefully you) asked to reset the password of your account at {practice}.",
        "Choose a new password",
    ),
}


def account_message(settings: Settings, purpose: str, url: str, inviter: str = "") -> Message:
    subject, opening, action = _WORDS[purpose]
    practice = settings.practice
    subject = subject.format(practice=practice)
    opening = opening.format(practice=practice, inviter=inviter or "The owner")
    closing = (
        "The link works for 30 minutes and once. If you didn't expect this email, ignore it: "
        "nothing changes until the link is used."
    )
    text = f"{opening}\n\n{action}: {url}\n\n{closing}\n"
    body = (
        f"<p>{html.escape(opening)}</p>"
        f'<p><a href="{html.escape(url)}">{html.escape(action)}</a></p>'
        f"<p>{html.escape(closing)}</p>"
    )
    return Message(kind=ACCOUNT_MAIL, subject=subject, html=body, text=text)


def send_link(settings: Settings, purpose: str, account: Account, inviter: str = "") -> bool:
    """Email an invitation or reset link to the account's address; whether it was accepted."""
    url = make_link(settings, purpose, account)
    message = account_message(settings, purpose, url, inviter)
    to = Recipient(f"{purpose}-{secrets.token_hex(8)}", account.email, account.name, "")
    try:
        done = mailing.deliver(settings, message, [to])
    except ValueError:  # the mail provider isn't configured
        return False
    return done.sent == 1


class NotWaiting(ValueError):
    """An invitation sent again to an account that has already chosen its password."""


def send_invitation_again(
    settings: Settings, session: Session, account_id: int, inviter: str
) -> tuple[Account, bool]:
    """A new invitation for an account not yet accepted, the older links stopping (the
    generation moves on); (the account, whether the email was accepted). NotWaiting once its
    password is set, LookupError when it is gone."""
    account = store.by_id(session, account_id)
    if account is None:
        raise LookupError(account_id)
    if account.password_hash is not None:
        raise NotWaiting(account.email)
    account.generation += 1
    session.flush()
    return account, send_link(settings, INVITE, account, inviter)
