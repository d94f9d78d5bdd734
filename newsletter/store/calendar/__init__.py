"""The send calendar: readers grouped set-based, each group projected by the schedule rule."""

# Readers who share their active place (series, next part, due moment), zone, cadence, pause,
# start date, the whole queue behind it and the moments of their broadcasts form a *group*: one
# GROUP BY row, however many readers it holds (a few hundred rows at 100k readers, never one
# query per reader; `groups`). Each group is projected by `core.schedule_rule.project`, the rule
# the engine sends by, with the whole remaining queue (every series waiting behind the active
# one) and the broadcast day rule; broadcasts themselves are grouped by (letter, due moment, zone,
# pause). `days` sums the projections per day, `people` lists who is in one count, and a
# person's page and the preference page project one reader the same way (`person`).
#
# Callers use `calendar.<name>`: this module re-exports each submodule's public names.

from newsletter.store.calendar.catalogue import Catalogue, catalogue
from newsletter.store.calendar.days import Day, Send, sends, upcoming
from newsletter.store.calendar.groups import NEAR, Group, groups
from newsletter.store.calendar.people import PEOPLE_SHOWN, Person, people
from newsletter.store.calendar.person import person_queue

__all__ = [
    "NEAR",
    "PEOPLE_SHOWN",
    "Catalogue",
    "Day",
    "Group",
    "Person",
    "Send",
    "catalogue",
    "groups",
    "people",
    "person_queue",
    "sends",
    "upcoming",
]
