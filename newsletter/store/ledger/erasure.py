"""Erasure on the ledger: a person's rows keep only series, part and status."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.store.models import Delivery


def forget_person(session: Session, subscriber_id: int) -> None:
    """Erasure: the person's rows keep only series, part and status (provider texts can quote
    the address)."""
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .values(subscriber_id=None, last_error=None, provider_message_id=None)
    )
