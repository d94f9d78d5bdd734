"""engine.extra_send: extra sends (a correction to everyone who had a part, a part again) go in
batches as articles do: one hand-over, one rendering and one provider call per batch, each
answer recorded; a refusal halts and gives up the rest; nothing is ever sent twice."""

from __future__ import annotations

from typing import Any

from scale_support import BATCH_MONDAY, batch_readers, statements
from sqlalchemy import select

from newsletter.core.config import Settings
from newsletter.engine.extra_send import CORRECTION_PREFIX, NOT_ACTIVE, send_extras
from newsletter.store.db import session_scope
from newsletter.store.halt import halted
from newsletter.store.ledger import extras
from newsletter.store.models import UNSUBSCRIBED, Series, Subscriber

MYTHS = "myths-about-psychotherapy"
BATCH = 50
NOW = BATCH_MONDAY


def _corrections(settings: Settings, readers: int) -> tuple[Settings, list[int]]:
    """`readers` confirmed readers, a correction of Myths part 1 claimed for each; settings
    with batches of BATCH."""
    subs = batch_readers(settings, readers)
    with session_scope(settings.database_url) as session:
        myths = session.scalar(select(Series.id).where(Series.slug == MYTHS))
        assert myths is not None
        wanted = [(f"fix-k-{s}", s, myths, 1) for s in subs]
        ids = extras.add_extras(session, extras.CORRECTION, wanted, NOW)
    return settings.model_copy(update={"batch_size": BATCH}), ids


def _rows(settings: Settings, ids: list[int]) -> dict[int, extras.Extra]:
    with session_scope(settings.database_url) as session:
        return {x.id: x for x in extras.extras_by_id(session, ids)}


def test_a_correction_to_many_goes_one_call_and_a_few_statements_a_batch(sg: Any) -> None:
    settings, fake = sg
    settings, ids = _corrections(settings, 2 * BATCH + 20)
    before = len(fake.requests)
    with statements(settings) as seen:
        report = send_extras(settings, ids, NOW)
    calls = fake.requests[before:]
    assert report.sent == len(ids) and report.failed == report.later == report.unknown == 0
    assert [len(r.personalizations) for r in calls] == [BATCH, BATCH, 20]
    assert all(not r.problems and r.status == 202 for r in calls)
    assert all(r.body["subject"].startswith(CORRECTION_PREFIX) for r in calls)
    # one per reader would be 8 a reader (the per-row loop ran 16,000 for 2,000 readers)
    assert len(seen) <= 3 * 12, len(seen)
    rows = _rows(settings, ids)
    assert {x.status for x in rows.values()} == {"sent"}
    sent_to = sorted(e for r in calls for e in r.emails)
    with session_scope(settings.database_url) as session:
        everyone = sorted(session.scalars(select(Subscriber.email)))
    assert sent_to == everyone  # each reader once


def test_the_same_rows_sent_again_send_nothing(sg: Any) -> None:
    settings, fake = sg
    settings, ids = _corrections(settings, BATCH + 5)
    send_extras(settings, ids, NOW)
    before = len(fake.requests)
    again = send_extras(settings, ids, NOW)  # a second worker, a retried request
    assert fake.requests[before:] == []
    assert again.sent == 0 and again.later == len(ids)
    assert {x.status for x in _rows(settings, ids).values()} == {"sent"}


def test_a_reader_gone_inactive_is_failed_and_the_others_go_in_one_call(sg: Any) -> None:
    settings, fake = sg
    settings, ids = _corrections(settings, 10)
    rows = _rows(settings, ids)
    gone = rows[ids[3]].subscriber_id
    with session_scope(settings.database_url) as session:
        reader = session.get(Subscriber, gone)
        assert reader is not None
        reader.status = UNSUBSCRIBED
    before = len(fake.requests)
    report = send_extras(settings, ids, NOW)
    [call] = fake.requests[before:]
    assert len(call.personalizations) == 9
    assert report.sent == 9 and report.failed == 1
    after = _rows(settings, ids)
    assert after[ids[3]].status == "failed" and after[ids[3]].last_error == NOT_ACTIVE


def test_a_refused_key_halts_and_gives_up_the_rest_as_not_sent(sg: Any) -> None:
    settings, fake = sg
    settings, ids = _corrections(settings, 2 * BATCH + 20)
    fake.then(202).unauthorized()  # the first batch goes, the second is refused
    before = len(fake.requests)
    report = send_extras(settings, ids, NOW)
    assert len(fake.requests[before:]) == 2  # nothing after the refusal
    assert report.halted is not None
    assert report.sent == BATCH and report.later == len(ids) - BATCH
    rows = _rows(settings, ids)
    assert {rows[i].status for i in ids[:BATCH]} == {"sent"}
    rest = [rows[i] for i in ids[BATCH:]]
    assert {x.status for x in rest} == {"failed"}
    assert all((x.last_error or "").startswith("not sent:") for x in rest)
    with session_scope(settings.database_url) as session:
        assert halted(session, settings) is not None


def test_no_answer_leaves_the_batch_handed_never_sent_twice(sg: Any) -> None:
    settings, fake = sg
    settings, ids = _corrections(settings, BATCH + 5)
    fake.drop()  # the first batch reached SendGrid, the answer never came
    before = len(fake.requests)
    report = send_extras(settings, ids, NOW)
    assert report.unknown == BATCH and report.sent == 5
    rows = _rows(settings, ids)
    assert {rows[i].status for i in ids[:BATCH]} == {"handed"}
    again = send_extras(settings, ids, NOW)
    assert again.sent == 0 and len(fake.requests) == before + 2


def test_pushed_back_rows_fail_as_not_sent_so_she_can_click_again(sg: Any) -> None:
    settings, fake = sg
    settings, ids = _corrections(settings, 8)
    fake.server_error(503)
    report = send_extras(settings, ids, NOW)
    assert report.later == 8 and report.sent == 0
    rows = _rows(settings, ids)
    assert {x.status for x in rows.values()} == {"failed"}
    assert all((x.last_error or "").startswith("not sent:") for x in rows.values())
