"""The tools a practice leaves (Mailchimp, Substack, Kit, Buttondown, MailerLite, Ghost, listmonk):
each one's export recognised by its header row, its columns, statuses and consent evidence mapped
onto the columns our own export writes (services.import_standing settles them as for ours).

One row of SOURCES a tool: the header names that mark its export, which of its columns hold the
address, the name (first + last), the time zone, the tags (series choices where she maps them in
the dry run), the status and how its values read here, when and from where the person confirmed.
Unsubscribed, cleaned, bounced and complained rows come in as such: never enrolled, never mailed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from newsletter.core import identity
from newsletter.core.vocabulary import ACTIVE, BOUNCED, PENDING, UNSUBSCRIBED
from newsletter.services.export import EXPORT_FIELDS
from newsletter.services.person_fields import RosterError

METHOD = "imported from {name}"  # the consent method kept (the page shows when and from where)
TAGS_MAX = 200  # distinct tags counted for the dry run's mapping (memory stays bounded)
TAG_CHARS = 80  # a tag is known by its first 80 characters (a page and a report show it)
MEMO_MAX = 1024  # distinct zone and tag cells remembered per import
# where each of ours sits in a converted row (the export's order, which the import reads)
(EMAIL, NAME, ZONE, SERIES, STATUS, METHOD_AT, CONSENT_AT, CONFIRMED, LEFT, JOINED, IP) = (
    EXPORT_FIELDS.index(column)
    for column in (
        "email", "name", "timezone", "series", "status", "consent_method", "consent_at",
        "confirmed_at", "unsubscribed_at", "created_at", "consent_ip",
    )
)  # fmt: skip


def _statuses(**groups: tuple[str, ...]) -> Mapping[str, str]:
    """Our status for each of a tool's status words (lower case): `active=("enabled",)`."""
    return MappingProxyType({word: ours for ours, words in groups.items() for word in words})


@dataclass(frozen=True)
class Source:
    """One tool's export: how to recognise it and what each of its columns becomes."""

    name: str
    signature: frozenset[str]  # header names (lower case) all found in its export
    email: tuple[str, ...]  # the address: the first of these the header has
    names: tuple[str, ...] = ()  # joined with a space (first + last)
    timezone: str | None = None  # an unknown zone falls back to the default
    tags: str | None = None  # tags, groups or labels: series where she maps them
    status: str | None = None  # the column whose words `statuses` reads (others: pending)
    statuses: Mapping[str, str] = field(default_factory=dict)
    file_status: tuple[tuple[str, str], ...] = ()  # a column that makes every row this status
    consent_at: tuple[str, ...] = ()  # when they confirmed: the first of these not empty
    consent_ip: tuple[str, ...] = ()
    created_at: tuple[str, ...] = ()
    unsubscribed_at: tuple[str, ...] = ()


_YES_NO = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}

SOURCES: tuple[Source, ...] = (
    Source(
        "Mailchimp",
        frozenset({"email address", "optin_time", "confirm_time"}),
        email=("email address",),
        names=("first name", "last name"),
        timezone="timezone",
        tags="tags",
        file_status=(("clean_time", BOUNCED), ("unsub_time", UNSUBSCRIBED)),
        consent_at=("confirm_time", "optin_time"),
        consent_ip=("confirm_ip", "optin_ip"),
        created_at=("optin_time", "confirm_time"),
        unsubscribed_at=("unsub_time", "clean_time"),
    ),
    Source(
        "Substack",
        frozenset({"email", "active_subscription", "email_disabled"}),
        email=("email",),
        names=("name",),
        status="email_disabled",
        statuses=_statuses(active=("false", "no", "0"), unsubscribed=("true", "yes", "1")),
        consent_at=("created_at",),
        created_at=("created_at",),
    ),
    Source(
        "Kit",
        frozenset({"first_name", "state"}),
        email=("email_address", "email"),
        names=("first_name", "last_name"),
        tags="tags",
        status="state",
        statuses=_statuses(
            active=("active", "cold"),
            pending=("inactive", "unconfirmed"),
            unsubscribed=("cancelled", "canceled"),
            bounced=("bounced",),
            complained=("complained",),
        ),
        consent_at=("created_at",),
        created_at=("created_at",),
    ),
    Source(
        "Buttondown",
        frozenset({"subscriber_type"}),
        email=("email", "email_address"),
        tags="tags",
        status="subscriber_type",
        statuses=_statuses(
            active=("regular", "premium", "gifted", "churning", "trialed", "past_due", "paused"),
            pending=("unactivated",),
            unsubscribed=("unsubscribed", "removed"),
            bounced=("undeliverable",),
            complained=("complained", "spammy"),
        ),
        consent_at=("creation_date", "created_date"),
        created_at=("creation_date", "created_date"),
    ),
    Source(
        "MailerLite",
        frozenset({"opted_in_at", "optin_ip"}),
        email=("email", "subscriber"),
        names=("name", "last_name"),
        tags="groups",
        status="status",
        statuses=_statuses(
            active=("active",),
            pending=("unconfirmed",),
            unsubscribed=("unsubscribed",),
            bounced=("bounced",),
            complained=("junk",),
        ),
        consent_at=("opted_in_at", "subscribed_at"),
        consent_ip=("optin_ip", "ip_address"),
        created_at=("subscribed_at", "opted_in_at"),
        unsubscribed_at=("unsubscribed_at",),
    ),
    Source(
        "Ghost",
        frozenset({"subscribed_to_emails", "complimentary_plan"}),
        email=("email",),
        names=("name",),
        tags="labels",
        status="subscribed_to_emails",
        statuses=_statuses(active=("true", "yes", "1"), unsubscribed=("false", "no", "0")),
        consent_at=("created_at",),
        created_at=("created_at",),
    ),
    Source(
        "listmonk",
        frozenset({"uuid", "attributes", "status"}),
        email=("email",),
        names=("name",),
        status="status",
        statuses=_statuses(active=("enabled",), unsubscribed=("disabled", "blocklisted")),
        consent_at=("created_at",),
        created_at=("created_at",),
    ),
)


def detect(header: list[str]) -> Source | None:
    """The tool whose export has this header row; None for ours or a plain list."""
    names = {cell.strip().lower() for cell in header}
    return next((source for source in SOURCES if source.signature <= names), None)


def split_tags(cell: str) -> tuple[str, ...]:
    """A tags cell as each tool writes it: `"A","B"` (Mailchimp), `A, B`, `['A', 'B']`."""
    parts = (part.strip().strip("\"'").strip() for part in cell.strip().strip("[]").split(","))
    return tuple(dict.fromkeys(part[:TAG_CHARS] for part in parts if part))


@dataclass(frozen=True)
class Plan:
    """One file's source and how each of its rows becomes a row in our export's columns."""

    source: Source
    status: str | None  # the whole file's (Mailchimp's unsubscribed and cleaned exports)
    columns: tuple[tuple[str, str], ...]  # each source column and what it became
    tags: dict[str, int]  # each tag the rows carry and how many rows do (filled while read)
    convert: Callable[[list[str]], list[str]]

    @property
    def title(self) -> str:
        kind = {BOUNCED: " (cleaned)", UNSUBSCRIBED: " (unsubscribed)"}.get(self.status or "", "")
        return f"{self.source.name}{kind}"


def _first(index: dict[str, int], names: tuple[str, ...]) -> list[int]:
    return [index[name] for name in names if name in index]


def plan(
    header: list[str], tag_series: Mapping[str, str] | None, known_series: set[str]
) -> Plan | None:
    """How to read a file with this header row (None: ours or a plain list, read as they are).
    `tag_series`: her mapping of the tool's tags to series slugs (a tag not mapped: no choice)."""
    source = detect(header)
    if source is None:
        return None
    mapping = dict(tag_series or {})
    unknown = sorted(slug for slug in set(mapping.values()) if slug not in known_series)
    if unknown:
        named = ", ".join(unknown)[:120]
        raise RosterError(f"tags are mapped to series that do not exist: {named}")
    lower = [cell.strip().lower() for cell in header]
    index: dict[str, int] = {}
    for i, name in enumerate(lower):
        index.setdefault(name, i)
    email = _first(index, source.email)
    if not email:
        raise RosterError(f"this looks like a {source.name} export but has no email column")
    fixed = next((status for column, status in source.file_status if column in index), None)
    raw = {name: cell.strip() for name, cell in zip(lower, header, strict=True)}
    roles = _roles(source, index, fixed, raw)
    columns = tuple(
        (raw.strip(), roles.get(name, "ignored"))
        for raw, name in zip(header, lower, strict=True)
        if raw.strip()
    )
    tags: dict[str, int] = {}
    convert = _converter(source, index, email[0], fixed, mapping, tags)
    return Plan(source, fixed, columns, tags, convert)


def _roles(
    source: Source, index: dict[str, int], fixed: str | None, raw: dict[str, str]
) -> dict[str, str]:
    """What each column the plan reads becomes, in the dry run's words (a column read twice,
    as when they joined and when they confirmed, says both)."""
    roles: dict[str, list[str]] = {}

    def say(names: tuple[str, ...], words: str) -> None:
        present = [name for name in names if name in index]
        for before, name in zip([None, *present], present, strict=False):
            when = f" (where {raw[before]} is empty)" if before else ""
            roles.setdefault(name, []).append(words + when)

    say((next(name for name in source.email if name in index),), "email address")
    joined = len([name for name in source.names if name in index]) > 1
    for name in source.names:
        if name in index:
            roles[name] = ["name (first and last joined)" if joined else "name"]
    if source.timezone:
        say((source.timezone,), "time zone (one not known here: the default)")
    if source.tags:
        say((source.tags,), "series, as you map its tags")
    if source.status:
        say((source.status,), "status (unsubscribed, bounced, complained: kept, never mailed)")
    for column, status in source.file_status:
        if column in index and status == fixed:
            roles[column] = [f"every row {status}: kept, never mailed"]
    say(source.consent_at, "consent: when they confirmed")
    say(source.consent_ip, "consent: from where (IP address)")
    say(source.created_at, "joined")
    say(source.unsubscribed_at, "left")
    return {name: "; ".join(words) for name, words in roles.items()}


def _converter(
    source: Source,
    index: dict[str, int],
    email: int,
    fixed: str | None,
    mapping: dict[str, str],
    counts: dict[str, int],
) -> Callable[[list[str]], list[str]]:
    names = _first(index, source.names)
    zone = index.get(source.timezone or "")
    tag = index.get(source.tags or "")
    status = index.get(source.status or "")
    at, ip = _first(index, source.consent_at), _first(index, source.consent_ip)
    created, left = _first(index, source.created_at), _first(index, source.unsubscribed_at)
    width = max(index.values()) + 1
    method = METHOD.format(name=source.name)
    words = source.statuses
    zones: dict[str, str] = {}
    chosen: dict[str, tuple[tuple[str, ...], str]] = {}

    def zone_of(cell: str) -> str:
        found = zones.get(cell)
        if found is None:
            try:
                found = identity.check_zone(cell, "")
            except ValueError:
                found = ""  # a tool's odd zone: the default, not a refused row
            if len(zones) < MEMO_MAX:
                zones[cell] = found
        return found

    def series_of(cell: str) -> str:
        found = chosen.get(cell)
        if found is None:
            each = split_tags(cell)
            found = (each, " ".join(dict.fromkeys(mapping[t] for t in each if t in mapping)))
            if len(chosen) < MEMO_MAX:
                chosen[cell] = found
        for t in found[0]:
            if t in counts or len(counts) < TAGS_MAX:
                counts[t] = counts.get(t, 0) + 1
        return found[1]

    def first(row: list[str], columns: list[int]) -> str:
        for i in columns:
            if row[i].strip():
                return row[i].strip()
        return ""

    def convert(row: list[str]) -> list[str]:
        if not "".join(row).strip():
            return row  # a blank line stays blank (skipped)
        if len(row) < width:
            row = row + [""] * (width - len(row))
        if fixed is not None:
            state = fixed
        elif status is None:
            state = ACTIVE
        else:
            state = words.get(row[status].strip().lower(), PENDING)
        when = first(row, at)
        out = [""] * len(EXPORT_FIELDS)
        out[EMAIL] = row[email]
        out[NAME] = " ".join([row[i] for i in names]).strip()  # the maker cleans spaces
        out[ZONE] = "" if zone is None else zone_of(row[zone])
        out[SERIES] = "" if tag is None or not row[tag].strip() else series_of(row[tag])
        out[STATUS] = state
        if when:  # the tool's evidence of consent (a pending row never confirmed)
            out[METHOD_AT], out[CONSENT_AT] = method, when
            out[CONFIRMED] = "" if state == PENDING else when
        out[LEFT] = first(row, left)
        out[JOINED] = first(row, created) or when
        out[IP] = first(row, ip)
        return out

    return convert
