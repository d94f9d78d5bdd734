"""The schedule rule without a database: slots, cadence, pause, DST, Chatham, and the broadcast
day rule moving a part (the property test in tests/engine/test_projection.py checks the same
rule against the engine's real sends)."""

from __future__ import annotations

import datetime as dt

from newsletter.core import schedule_rule as rule
from newsletter.core import timing

TUESDAY = 1
MONDAY = dt.datetime(2027, 1, 4, 12, tzinfo=dt.UTC)
MYTHS = rule.SeriesTimes(1, TUESDAY, "09:00", "weekly", 4)
CO = rule.SeriesTimes(2, TUESDAY, "09:00", "weekly", 2)
LONDON = rule.Reader("Europe/London")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def moments(queue: rule.Queue, weeks: int = 12) -> list[tuple[int, int, dt.datetime]]:
    return [tuple(s) for s in rule.project(queue, MONDAY, MONDAY + dt.timedelta(weeks=weeks))]


def test_parts_are_one_cadence_apart_and_the_next_series_follows() -> None:
    queue = rule.Queue(LONDON, (rule.Place(MYTHS, 1, utc(2027, 1, 5, 9)), rule.Place(CO)))
    got = moments(queue)
    assert [(k, n) for k, n, _ in got] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2)]
    assert [at.date() for _, _, at in got] == [
        dt.date(2027, 1, 5) + dt.timedelta(weeks=i) for i in range(6)
    ]


def test_fortnightly_reader_gets_a_part_every_two_weeks() -> None:
    reader = rule.Reader("Europe/London", "fortnightly")
    got = moments(rule.Queue(reader, (rule.Place(MYTHS, 1, utc(2027, 1, 5, 9)),)))
    assert [at.date() for _, _, at in got] == [
        dt.date(2027, 1, 5) + dt.timedelta(weeks=2 * i) for i in range(4)
    ]


def test_a_pause_holds_every_slot_until_its_local_date() -> None:
    reader = rule.Reader("Europe/London", paused_until=dt.date(2027, 1, 20))
    got = moments(rule.Queue(reader, (rule.Place(MYTHS, 1, utc(2027, 1, 5, 9)),)))
    # the due part was placed before the pause: it stays; the next waits for 20 Jan
    assert [at.date() for _, _, at in got][:3] == [
        dt.date(2027, 1, 5),
        dt.date(2027, 1, 26),
        dt.date(2027, 2, 2),
    ]
    assert rule.pause_holds(reader, utc(2027, 1, 19, 23, 59))
    assert not rule.pause_holds(reader, utc(2027, 1, 20, 0, 0))


def test_a_pause_is_over_on_the_readers_date_not_utcs() -> None:
    """Chatham's 20 Jan starts at 10:15 UTC on the 19th: the pause is over there, not in UTC."""
    chatham = rule.Reader("Pacific/Chatham", paused_until=dt.date(2027, 1, 20))
    moment = utc(2027, 1, 19, 11)
    assert moment.date() < dt.date(2027, 1, 20)
    assert not rule.pause_holds(chatham, moment)
    assert rule.local_today(chatham, moment) == dt.date(2027, 1, 20)


def test_a_part_due_on_a_broadcast_day_goes_the_next_day_and_the_cadence_keeps_its_weekday() -> (
    None
):
    letter = rule.Letter(9, utc(2027, 1, 12, 15))  # Tue 12 Jan, 15:00 in London
    queue = rule.Queue(LONDON, (rule.Place(MYTHS, 1, utc(2027, 1, 5, 9)),), (letter,))
    got = moments(queue)
    assert (9, 1, utc(2027, 1, 12, 15)) in got
    parts = [(n, at) for k, n, at in got if k == 1]
    assert parts == [
        (1, utc(2027, 1, 5, 9)),
        (2, utc(2027, 1, 13, 9)),  # Wednesday: the broadcast took Tuesday
        (3, utc(2027, 1, 19, 9)),  # back on Tuesday: the cadence counts from the slot
        (4, utc(2027, 1, 26, 9)),
    ]


def test_two_broadcast_days_in_a_row_move_the_part_past_both() -> None:
    letters = (rule.Letter(8, utc(2027, 1, 12, 8)), rule.Letter(9, utc(2027, 1, 13, 8)))
    queue = rule.Queue(LONDON, (rule.Place(MYTHS, 2, utc(2027, 1, 12, 9)),), letters)
    assert next(at for k, _, at in moments(queue) if k == 1) == utc(2027, 1, 14, 9)


def test_the_day_rule_itself() -> None:
    taken = {dt.date(2027, 1, 12)}
    way = rule.make_way("Europe/London", utc(2027, 1, 12, 9), TUESDAY, taken)
    assert way == rule.Way(utc(2027, 1, 13, 9), utc(2027, 1, 12, 9))
    kept = rule.make_way("Europe/London", utc(2027, 1, 13, 9), TUESDAY, taken)
    assert kept == rule.Way(None, utc(2027, 1, 12, 9))  # moved here: the slot is Tuesday's
    plain = rule.make_way("Europe/London", utc(2027, 1, 19, 9), TUESDAY, taken)
    assert plain == rule.Way(None, utc(2027, 1, 19, 9))


def test_local_time_holds_across_dst_and_chathams_quarter_hour() -> None:
    start = dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC)
    long = rule.SeriesTimes(3, TUESDAY, "09:00", "weekly", 8)
    ny = rule.Reader("America/New_York")
    first = rule.slot_after(ny, long, start)
    got = rule.project(rule.Queue(ny, (rule.Place(long, 1, first),)), start)
    zone = timing.zone_info(ny.zone)
    assert [s.at.astimezone(zone).strftime("%a %H:%M") for s in got] == ["Tue 09:00"] * 8
    assert {s.at.hour for s in got} == {14, 13}  # EST then EDT (14 March)
    chatham = rule.Reader("Pacific/Chatham")
    first = rule.slot_after(chatham, long, start)
    got = rule.project(rule.Queue(chatham, (rule.Place(long, 1, first),)), start)
    zone = timing.zone_info(chatham.zone)
    assert [s.at.astimezone(zone).strftime("%a %H:%M") for s in got] == ["Tue 09:00"] * 8
    assert {s.at.strftime("%H:%M") for s in got} == {"19:15", "20:15"}  # +13:45, then +12:45


def test_a_series_waiting_behind_starts_on_its_start_date() -> None:
    later = rule.Place(CO, 1, None, dt.date(2027, 3, 1))
    queue = rule.Queue(LONDON, (rule.Place(MYTHS, 1, utc(2027, 1, 5, 9)), later))
    co = [at for k, _, at in moments(queue, 20) if k == 2]
    assert co == [utc(2027, 3, 2, 9), utc(2027, 3, 9, 9)]


def test_a_paused_reader_does_not_get_a_broadcast_and_nothing_active_means_nothing_behind() -> None:
    reader = rule.Reader("Europe/London", paused_until=dt.date(2027, 2, 1))
    queue = rule.Queue(reader, (rule.Place(MYTHS), rule.Place(CO)), (rule.Letter(9, MONDAY),))
    assert rule.project(queue, MONDAY) == []
    assert rule.next_send(queue, MONDAY) is None


def test_an_overdue_part_shows_now_and_a_late_send_counts_from_the_day_before() -> None:
    queue = rule.Queue(LONDON, (rule.Place(MYTHS, 3, utc(2027, 1, 1, 9)),))
    got = rule.project(queue, MONDAY)
    assert got[0] == rule.Send(1, 3, MONDAY)
    assert got[1].at == rule.after_send(LONDON, MYTHS, None, utc(2027, 1, 1, 9), MONDAY)
    assert got[1].at == utc(2027, 1, 12, 9)  # a week after the day before the late send
