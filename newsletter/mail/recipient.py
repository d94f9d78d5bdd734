"""The one builder of a recipient: the address, an id, and the personal values (the greeting and
two signed links) a backend substitutes into a message rendered once for a whole batch."""

from __future__ import annotations

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.mail.message import Recipient
from newsletter.mail.render import personal_values


def recipient(
    settings: Settings,
    delivery_id: int | str,
    public_id: str,
    email: str,
    name: str | None,
    *,
    confirm: bool = False,
) -> Recipient:
    """One recipient: `delivery_id` is the ledger row for an article (a random id for other
    mail), `public_id` the subscriber's, from which the unsubscribe and preference links (and,
    with `confirm`, the expiring double opt-in link) are signed (no address or row id in them)."""
    base, secret = settings.public_url, settings.secret  # read once: this runs per reader
    unsubscribe = tokens.link(base, secret, "unsubscribe", public_id)
    preferences = tokens.link(base, secret, "preferences", public_id)
    confirm_url = tokens.link(base, secret, "confirm", public_id) if confirm else ""
    return Recipient(
        delivery_id=str(delivery_id),
        email=email,
        name=name,
        unsubscribe_url=unsubscribe,
        values=personal_values(
            name=name,
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
            confirm_url=confirm_url,
        ),
    )
