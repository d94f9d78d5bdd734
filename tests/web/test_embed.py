"""/signup from her own website: listed origins only, honeypot, limits, framing (web/public/embed.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from web_helpers import add_series, client, outbox

from newsletter.core.config import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import PENDING, Subscriber

HER_SITE = "https://www.her-practice.example"
OTHER_SITE = "https://elsewhere.example"


@pytest.fixture
def site(settings: Settings) -> Settings:
    add_series(settings, "myths", "Common myths", parts=2, order=1, published=1)
    return settings.model_copy(update={"signup_origins": f"{HER_SITE}\nhttp://127.0.0.1:8765"})


@pytest.fixture
def c(site: Settings):  # type: ignore[no-untyped-def]
    with client(site) as test_client:
        yield test_client


def person(settings: Settings, email: str = "anna@example.org") -> Subscriber | None:
    with session_scope(settings.database_url) as s:
        return s.scalar(select(Subscriber).where(Subscriber.email_key == email))


def post(c, origin: str | None = HER_SITE, referer: str | None = None, **values: str):  # type: ignore[no-untyped-def]
    headers = {}
    if origin is not None:
        headers["Origin"] = origin
    if referer is not None:
        headers["Referer"] = referer
    data = {"email": "anna@example.org", "name": "Anna", **values}
    return c.post("/signup", data=data, headers=headers)


def test_a_post_from_her_site_signs_up_with_double_opt_in_and_links_back(c, site) -> None:
    response = post(c)
    assert response.status_code == 200 and "check your email" in response.text
    assert f'href="{HER_SITE}" target="_top"' in response.text
    (mail,) = outbox(site)
    assert "anna@example.org" in mail.to
    assert mail.link("confirm")
    someone = person(site)
    assert someone is not None and someone.status == PENDING  # confirms like everyone else
    assert someone.consent_form == f"website {HER_SITE}"
    assert someone.requested_series is None  # no choice on her form: every live series


def test_a_post_from_a_site_she_has_not_listed_is_refused(c, site) -> None:
    response = post(c, origin=OTHER_SITE)
    assert response.status_code == 403 and "that website" in response.text
    assert person(site) is None and outbox(site) == []


@pytest.mark.parametrize(
    ("origin", "referer", "status"),
    [
        (None, f"{HER_SITE}/contact/", 200),  # no Origin: the Referer's origin counts
        (None, f"{OTHER_SITE}/", 403),
        (None, None, 403),  # neither: refused (a forged post can send neither)
        ("null", None, 403),  # a no-referrer or sandboxed page
        ("null", f"{HER_SITE}/", 200),
        (HER_SITE, f"{OTHER_SITE}/", 200),  # Origin wins over Referer
        (OTHER_SITE, f"{HER_SITE}/", 403),
        ("https://www.her-practice.example.evil.example", None, 403),
        ("http://www.her-practice.example", None, 403),  # another scheme is another origin
    ],
)
def test_the_origin_else_the_referer_must_be_hers(c, site, origin, referer, status) -> None:
    assert post(c, origin=origin, referer=referer).status_code == status
    assert (person(site) is not None) == (status == 200)


def test_no_listed_sites_refuses_every_cross_site_post(settings: Settings) -> None:
    with client(settings) as c:
        assert post(c).status_code == 403


def test_a_filled_honeypot_looks_like_success_and_does_nothing(c, site) -> None:
    response = post(c, website="http://spam.example")
    assert response.status_code == 200 and "check your email" in response.text
    assert person(site) is None and outbox(site) == []


def test_bad_input_shows_the_form_again_with_the_reason(c, site) -> None:
    response = post(c, email="not-an-address")
    assert response.status_code == 400 and 'value="not-an-address"' in response.text
    assert person(site, "not-an-address") is None and outbox(site) == []


def test_the_per_ip_limit_counts_cross_site_posts(c, site) -> None:
    for i in range(10):
        assert post(c, email=f"p{i}@example.org").status_code == 200
    refused = post(c, email="p10@example.org")
    assert refused.status_code == 429 and person(site, "p10@example.org") is None


def test_the_per_address_limit_sends_one_confirmation_for_repeats(c, site) -> None:
    assert post(c).status_code == 200
    assert post(c).status_code == 200  # the same page, no second email within the cooldown
    assert len(outbox(site)) == 1


def test_subscribe_still_needs_its_csrf_token_even_from_her_site(c, site) -> None:
    response = c.post(
        "/subscribe", data={"email": "anna@example.org"}, headers={"Origin": HER_SITE}
    )
    assert response.status_code == 400 and person(site) is None


def framing(response) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    csp = response.headers["content-security-policy"]
    ancestors = next(p for p in csp.split("; ") if p.startswith("frame-ancestors"))
    return ancestors, response.headers.get("x-frame-options")


def test_only_the_embedded_form_and_its_answer_may_be_framed_and_only_by_her(c, site) -> None:
    embedded = c.get("/signup/embed")
    assert embedded.status_code == 200 and 'action="/signup"' in embedded.text
    assert framing(embedded) == (f"frame-ancestors {HER_SITE} http://127.0.0.1:8765", None)
    # its form must send an Origin: no no-referrer policy on this page
    assert embedded.headers["referrer-policy"] == "strict-origin"
    assert "no-referrer" not in embedded.text
    assert framing(post(c))[0] == f"frame-ancestors {HER_SITE} http://127.0.0.1:8765"
    for path in ("/", "/archive", "/admin/login"):
        assert framing(c.get(path)) == ("frame-ancestors 'none'", "DENY"), path
        assert c.get(path).headers["referrer-policy"] == "no-referrer"


def test_without_listed_sites_the_embedded_form_may_be_framed_by_nobody(settings) -> None:
    with client(settings) as c:
        assert framing(c.get("/signup/embed")) == ("frame-ancestors 'none'", None)
