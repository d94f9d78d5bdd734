"""Recipients built once per chunk (`recipient_maker`) are the recipients built one by one."""

from __future__ import annotations

import dataclasses

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.mail import render
from newsletter.mail.recipient import recipient, recipient_maker

PEOPLE = [
    (7, "0123456789abcdef", "reader@example.org", "Anna  Okafor"),
    ("extra-3", "fedcba9876543210", "b@example.net", None),
    (8, "00000000000000ff", "c@example.org", "<b>Ben</b> & Co"),
    (9, "1111111111111111", "d@example.org", "  "),
]


def test_a_chunk_s_recipients_are_the_one_by_one_recipients(settings: Settings) -> None:
    make = recipient_maker(settings)
    for delivery_id, public_id, email, name in PEOPLE:
        fast = make(delivery_id, public_id, email, name)
        assert fast == recipient(settings, delivery_id, public_id, email, name)
        assert dataclasses.asdict(fast) == {
            "delivery_id": str(delivery_id),
            "email": email,
            "name": name,
            "unsubscribe_url": tokens.link(
                settings.public_url, settings.secret, "unsubscribe", public_id
            ),
            "values": render.personal_values(
                name=name,
                unsubscribe_url=tokens.link(
                    settings.public_url, settings.secret, "unsubscribe", public_id
                ),
                preferences_url=tokens.link(
                    settings.public_url, settings.secret, "preferences", public_id
                ),
            ),
        }


def test_a_confirmation_recipient_carries_its_expiring_link(settings: Settings) -> None:
    made = recipient(settings, "c-1", "0123456789abcdef", "a@example.org", None, confirm=True)
    token = made.values[render.CONFIRM_URL].rsplit("/confirm/", 1)[1]
    assert tokens.read_token(settings.secret, "confirm", token) == "0123456789abcdef"
