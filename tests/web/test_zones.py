"""The time-zone menu: common zones first with plain names, then places by region, no aliases."""

from __future__ import annotations

import re

from web_helpers import add_series, client

from newsletter.core.config import Settings
from newsletter.web import zones


def test_common_zones_come_first_and_legacy_aliases_are_left_out() -> None:
    groups = zones.zone_groups()
    assert groups[0][0] == "Common"
    common = dict(groups[0][1])
    assert common["America/New_York"] == "US Eastern (New York)"
    every = [z for _, options in groups for z, _ in options]
    assert len(every) == len(set(every))  # a common zone is not listed twice
    assert "Europe/Lisbon" in every and "America/Argentina/Buenos_Aires" in every
    for alias in ("Etc/GMT+5", "US/Eastern", "GB", "Canada/Pacific", "Etc/UTC", "Asia/Calcutta"):
        assert alias not in every
    assert 300 < len(every) < 450
    assert zones.label("America/Argentina/Buenos_Aires") == "America / Argentina / Buenos Aires"


def test_the_signup_page_offers_the_grouped_menu_with_a_search_box(settings: Settings) -> None:
    add_series(settings, "myths", "Myths")
    page = client(settings).get("/").text
    menu = page.split('<select id="timezone"', 1)[1].split("</select>", 1)[0]
    assert menu.index('label="Common"') < menu.index('label="Africa"')
    assert "Etc/GMT" not in menu and 'value="US/' not in menu
    assert re.search(r'<input type="search"[^>]*data-zone-search="timezone"', page)
    assert '<script src="/static/zones.js" defer></script>' in page


def test_a_zone_shows_its_friendly_name_with_the_id_on_hover() -> None:
    assert str(zones.with_id("America/Denver")) == (
        '<span class="zone" title="America/Denver">US Mountain (Denver)</span>'
    )
    assert str(zones.with_id("Asia/Ho_Chi_Minh")) == (
        '<span class="zone" title="Asia/Ho_Chi_Minh">Asia / Ho Chi Minh</span>'
    )
