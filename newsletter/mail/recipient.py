"""The one builder of a recipient: the address, an id, and the personal values (the greeting and
two signed links) a backend substitutes into a message rendered once for a whole batch."""

from __future__ import annotations

from collections.abc import Callable

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.mail.message import Recipient
from newsletter.mail.render import personal_values

# (delivery id, public id, address, name) -> the recipient
Maker = Callable[[int | str, str, str, str | None], Recipient]


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
    confirm_url = (
        tokens.link(settings.public_url, settings.secret, "confirm", public_id) if confirm else ""
    )
    return recipient_maker(settings, confirm_url)(delivery_id, public_id, email, name)


def recipient_maker(settings: Settings, confirm_url: str = "") -> Maker:
    """`recipient` for a whole chunk: the signing keys and the links' prefixes looked up once,
    each reader then costs two MACs and one dict (the same recipients, byte for byte)."""
    base, secret = settings.public_url, settings.secret
    unsubscribe_link = tokens.link_maker(base, secret, "unsubscribe")
    preferences_link = tokens.link_maker(base, secret, "preferences")

    def make(delivery_id: int | str, public_id: str, email: str, name: str | None) -> Recipient:
        unsubscribe = unsubscribe_link(public_id)
        return Recipient(
            delivery_id=str(delivery_id),
            email=email,
            name=name,
            unsubscribe_url=unsubscribe,
            values=personal_values(
                name=name,
                unsubscribe_url=unsubscribe,
                preferences_url=preferences_link(public_id),
                confirm_url=confirm_url,
            ),
        )

    return make
