"""The time-zone menu: common zones first with plain names, then every current place by region.

Legacy aliases (US/Eastern, Etc/GMT+5, …) are left out of the menu; they are still accepted when
typed or imported (core/identity.check_zone decides what is valid).
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from pathlib import Path

from markupsafe import Markup

from newsletter.core.identity import zone_names

COMMON: dict[str, str] = {
    "America/New_York": "US Eastern (New York)",
    "America/Chicago": "US Central (Chicago)",
    "America/Denver": "US Mountain (Denver)",
    "America/Phoenix": "Arizona (Phoenix)",
    "America/Los_Angeles": "US Pacific (Los Angeles)",
    "America/Anchorage": "Alaska (Anchorage)",
    "Pacific/Honolulu": "Hawaii (Honolulu)",
    "America/Toronto": "Canada Eastern (Toronto)",
    "America/Vancouver": "Canada Pacific (Vancouver)",
    "America/Halifax": "Canada Atlantic (Halifax)",
    "America/Mexico_City": "Mexico City",
    "America/Sao_Paulo": "Brazil (São Paulo)",
    "Europe/London": "UK (London)",
    "Europe/Dublin": "Ireland (Dublin)",
    "Europe/Paris": "Central Europe (Paris)",
    "Europe/Berlin": "Central Europe (Berlin)",
    "Europe/Athens": "Eastern Europe (Athens)",
    "Africa/Johannesburg": "South Africa (Johannesburg)",
    "Asia/Dubai": "Gulf (Dubai)",
    "Asia/Kolkata": "India (Kolkata)",
    "Asia/Singapore": "Singapore",
    "Asia/Tokyo": "Japan (Tokyo)",
    "Australia/Sydney": "Australia Eastern (Sydney)",
    "Australia/Perth": "Australia Western (Perth)",
    "Pacific/Auckland": "New Zealand (Auckland)",
    "UTC": "UTC",
}
REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


def label(zone: str) -> str:
    """A zone as people read it: "US Eastern (New York)", "Argentina / Buenos Aires"."""
    return COMMON.get(zone) or zone.replace("_", " ").replace("/", " / ")


def with_id(zone: str | None) -> Markup:
    """The one zone style of every page: the friendly name, the zone id on hover."""
    if not zone:
        return Markup("—")
    return Markup('<span class="zone" title="{}">{}</span>').format(zone, label(zone))


def _places() -> set[str] | None:
    """The zones tzdata lists for a country (zone.tab): no backward links like Asia/Calcutta.
    None when the system has no zone.tab (then every region zone is offered)."""
    for folder in zoneinfo.TZPATH:
        table = Path(folder) / "zone.tab"
        if table.is_file():
            lines = table.read_text(encoding="utf-8").splitlines()
            return {ln.split("\t")[2] for ln in lines if ln and not ln.startswith("#")}
    return None


@lru_cache(maxsize=1)
def zone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """(group label, ((zone, label), …)) for a <select>: "Common" first, then each region."""
    names = set(zone_names())
    places = _places()
    listed = names if places is None else names & (places | set(COMMON))
    groups: list[tuple[str, tuple[tuple[str, str], ...]]] = [
        ("Common", tuple((z, label(z)) for z in COMMON if z in names))
    ]
    for region in REGIONS:
        zones = sorted(z for z in listed if z.split("/", 1)[0] == region and z not in COMMON)
        groups.append((region, tuple((z, label(z)) for z in zones)))
    return tuple(groups)


def in_menu(zone: str) -> bool:
    return any(zone == z for _, options in zone_groups() for z, _ in options)
