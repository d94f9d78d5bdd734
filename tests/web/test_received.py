"""Send me this again: a copy of a part the reader received, by email, outside the ledger;
parts they never received can't be asked for."""

from __future__ import annotations

from engine_support import add_person, ledger, ship, utc
from sqlalchemy import select
from web_helpers import client, csrf, outbox

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.engine.tick import tick
from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber

MYTHS = "myths-about-psychotherapy"


def test_a_received_part_again_and_only_that(settings: Settings) -> None:
    start = utc(2027, 2, 1, 12)
    ship(settings, start)
    sid = add_person(settings, start, "Europe/London")
    assert tick(settings, utc(2027, 2, 2, 9)).sent == 1  # part 1
    with session_scope(settings.database_url) as s:
        sub = s.get(Subscriber, sid)
        assert sub is not None
        link = "/preferences/" + tokens.make_token(settings.secret, "preferences", sub.public_id)
        address = sub.email
    before = ledger(settings)
    with client(settings) as c:
        assert "Articles you have received" in c.get(link).text
        page = c.get(f"{link}/received")
        assert page.status_code == 200 and f'value="{MYTHS}/1"' in page.text
        assert f'value="{MYTHS}/2"' not in page.text
        not_had = c.post(
            f"{link}/received", data={"csrf_token": csrf(c, link), "part": f"{MYTHS}/2"}
        )
        assert not_had.status_code == 400
        again = c.post(f"{link}/received", data={"csrf_token": csrf(c, link), "part": f"{MYTHS}/1"})
        assert again.status_code == 200 and "on its way" in again.text
        assert address not in again.text
    copies = [m for m in outbox(settings) if address in m.to]
    assert len(copies) == 2  # the scheduled send and one copy
    assert copies[0].subject == copies[1].subject
    assert ledger(settings) == before  # the copy is not a delivery: the ledger is unchanged
    with session_scope(settings.database_url) as s:
        assert s.scalar(select(Subscriber.status).where(Subscriber.id == sid)) == "active"


def _same_page(text: str, token: str, csrf_token: str) -> str:
    """The page without what differs per reader by design (their link, the form's CSRF)."""
    return text.replace(token, "TOKEN").replace(csrf_token, "CSRF")


def test_a_copy_only_for_active_or_unsubscribed_readers_and_the_same_page(
    settings: Settings,
) -> None:
    start = utc(2027, 2, 1, 12)
    ship(settings, start)
    statuses = ("active", "unsubscribed", "bounced", "complained")
    ids = {status: add_person(settings, start, "Europe/London") for status in statuses}
    assert tick(settings, utc(2027, 2, 2, 9)).sent == len(statuses)  # part 1 to each
    pages, addresses = {}, {}
    with session_scope(settings.database_url) as s:
        for status, sid in ids.items():
            sub = s.get(Subscriber, sid)
            assert sub is not None
            sub.status = status
            addresses[status] = sub.email
    with client(settings) as c:
        for status, sid in ids.items():
            with session_scope(settings.database_url) as s:
                public_id = s.scalar(select(Subscriber.public_id).where(Subscriber.id == sid))
            token = tokens.make_token(settings.secret, "preferences", str(public_id))
            link = f"/preferences/{token}"
            form = csrf(c, link)
            again = c.post(f"{link}/received", data={"csrf_token": form, "part": f"{MYTHS}/1"})
            pages[status] = (again.status_code, _same_page(again.text, token, form))
    assert len(set(pages.values())) == 1 and pages["active"][0] == 200  # no oracle
    mails = outbox(settings)
    got = {
        status: sum(1 for m in mails if address in m.to) for status, address in addresses.items()
    }
    assert got == {"active": 2, "unsubscribed": 2, "bounced": 1, "complained": 1}  # part 1 + copy
