"""The ledger: the one writer of the deliveries table and its named reads, re-exported here."""

# Ledger states (one row per subscriber, series and part; the unique constraint decides):
# - claimed, retry_at set   : row written, provider not called yet (retry_at = claim time).
# - claimed, retry_at NULL  : handed to the provider (compare-and-set, committed before the call);
#                             outcome unknown until recorded; `settle` (reconcile) settles it.
# - sent                    : accepted; enrollment advanced in the same transaction.
# - retry                   : due again at retry_at (rate limit, 5xx, render error, halt).
# - failed                  : permanent for this address; the enrollment moves on.
# Every statement names its rows by id or by (subscriber, series, part) and does one thing.
# PostgreSQL gets array parameters (unnest / ANY) where SQLite gets IN lists and executemany: the
# differences stay inside this package (`dialect` and the bulk statements beside their callers).
# No module outside this package writes `deliveries` (tests/store/test_ledger.py scans for it).
#
# The engine, services and views call `ledger.<name>` or import names from here: this module
# re-exports each submodule's public names, so a name's home can move without its callers.

from newsletter.store.ledger.claims import (
    ExistingRow,
    claim_round,
    existing_rows,
    insert_claims,
    take_back_keys,
    take_back_ready,
)
from newsletter.store.ledger.dialect import among
from newsletter.store.ledger.erasure import forget_person
from newsletter.store.ledger.events import (
    EventRef,
    fill_message_ids,
    mark_delivered,
    rows_by_id,
    take_back_confirmed,
)
from newsletter.store.ledger.handover import back_to_retry, claimed_rows, forget_claimed, hand_over
from newsletter.store.ledger.moves import move_enrollments, set_due
from newsletter.store.ledger.outcomes import (
    OutcomeRow,
    SentRow,
    UnknownRow,
    note_unknown,
    record,
    record_chunk,
)
from newsletter.store.ledger.rows import (
    PERSON_COLUMNS,
    RESENT_NOTE,
    Claim,
    LedgerRow,
    Move,
    PersonRow,
    PlaceRow,
    QueueChange,
)
from newsletter.store.ledger.settle import (
    HandedRow,
    SettledRow,
    enrollment_ids_of,
    handed_before,
    requeue_lost,
    resend,
    settle_handed,
)
from newsletter.store.ledger.views import (
    FailureRow,
    Outcomes,
    ReceivedPart,
    failures_since,
    first_handed_between,
    outcomes_since,
    person_history,
    received_parts,
    sent_per_part,
)

__all__ = [
    "PERSON_COLUMNS",
    "RESENT_NOTE",
    "Claim",
    "EventRef",
    "ExistingRow",
    "FailureRow",
    "HandedRow",
    "LedgerRow",
    "Move",
    "OutcomeRow",
    "Outcomes",
    "PersonRow",
    "PlaceRow",
    "QueueChange",
    "ReceivedPart",
    "SentRow",
    "SettledRow",
    "UnknownRow",
    "among",
    "back_to_retry",
    "claim_round",
    "claimed_rows",
    "enrollment_ids_of",
    "existing_rows",
    "failures_since",
    "fill_message_ids",
    "first_handed_between",
    "forget_claimed",
    "forget_person",
    "hand_over",
    "handed_before",
    "insert_claims",
    "mark_delivered",
    "move_enrollments",
    "note_unknown",
    "outcomes_since",
    "person_history",
    "received_parts",
    "record",
    "record_chunk",
    "requeue_lost",
    "resend",
    "rows_by_id",
    "sent_per_part",
    "set_due",
    "settle_handed",
    "take_back_confirmed",
    "take_back_keys",
    "take_back_ready",
]
