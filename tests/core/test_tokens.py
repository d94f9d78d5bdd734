"""Link tokens: compact never-expiring links, expiring confirm links, and old links still open."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from newsletter.core import tokens

SECRET = "s" * 64
PUBLIC_ID = "Qm9vcmRlcl9wdWJsaWNfaWQx"


@pytest.mark.parametrize("purpose", ["preferences", "unsubscribe"])
def test_never_expiring_links_are_compact_and_read_back(purpose):
    token = tokens.make_token(SECRET, purpose, PUBLIC_ID)
    assert token.count(".") == 1 and token.startswith(PUBLIC_ID + ".")
    assert tokens.read_token(SECRET, purpose, token) == PUBLIC_ID


def test_a_token_opens_only_its_own_purpose_and_secret():
    unsub = tokens.make_token(SECRET, "unsubscribe", PUBLIC_ID)
    with pytest.raises(tokens.TokenError):
        tokens.read_token(SECRET, "preferences", unsub)
    with pytest.raises(tokens.TokenError):
        tokens.read_token("t" * 64, "unsubscribe", unsub)
    with pytest.raises(tokens.TokenError):  # a compact token never passes for an expiring one
        tokens.read_token(SECRET, "confirm", unsub)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "X" + t[1:],  # another public id, same MAC
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # MAC changed
        lambda t: t.split(".")[0] + ".",  # MAC missing
        lambda t: "." + t.split(".")[1],  # id missing
        lambda t: t + "é",  # not ASCII
    ],
)
def test_tampered_compact_tokens_are_refused(mangle):
    token = tokens.make_token(SECRET, "unsubscribe", PUBLIC_ID)
    with pytest.raises(tokens.TokenError):
        tokens.read_token(SECRET, "unsubscribe", mangle(token))


def test_links_in_mails_sent_before_the_compact_form_still_open():
    old = URLSafeTimedSerializer(SECRET, salt="newsletter.unsubscribe").dumps(PUBLIC_ID)
    assert tokens.read_token(SECRET, "unsubscribe", old) == PUBLIC_ID
    with pytest.raises(tokens.TokenError):
        tokens.read_token(SECRET, "preferences", old)


def test_confirm_tokens_expire():
    token = tokens.make_token(SECRET, "confirm", PUBLIC_ID)
    assert token.count(".") == 2  # timed: carries its timestamp
    assert tokens.read_token(SECRET, "confirm", token) == PUBLIC_ID
    signer = URLSafeTimedSerializer(SECRET, salt="newsletter.confirm")
    stale = signer.dumps(PUBLIC_ID)
    tokens.MAX_AGE["confirm"], saved = -1, tokens.MAX_AGE["confirm"]
    try:
        with pytest.raises(tokens.TokenError) as caught:
            tokens.read_token(SECRET, "confirm", stale)
        assert caught.value.expired
    finally:
        tokens.MAX_AGE["confirm"] = saved


def test_link_is_the_public_url_purpose_and_token():
    url = tokens.link("https://news.example.org/", SECRET, "preferences", PUBLIC_ID)
    prefix = "https://news.example.org/preferences/"
    assert url.startswith(prefix)
    assert tokens.read_token(SECRET, "preferences", url[len(prefix) :]) == PUBLIC_ID


def test_unknown_purpose_is_a_programming_error():
    with pytest.raises(ValueError):
        tokens.make_token(SECRET, "admin", PUBLIC_ID)


def _before_link_maker(public_url: str, secret: str, purpose: str, public_id: str) -> str:
    """The compact link as the code signed it before `link_maker` (issue 26): a copy of the
    Python HMAC wrapper per token, base64url without padding. Mails sent since carry these."""
    import base64
    import hashlib
    import hmac

    key = hmac.new(secret.encode(), f"newsletter.link.{purpose}".encode(), hashlib.sha256).digest()
    mac = hmac.new(key, digestmod=hashlib.sha256).copy()
    mac.update(public_id.encode("utf-8"))
    signature = base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode("ascii")
    return f"{public_url.rstrip('/')}/{purpose}/{public_id}.{signature}"


@pytest.mark.parametrize("purpose", ["preferences", "unsubscribe"])
@pytest.mark.parametrize("public_url", ["https://news.example.org", "https://h.example/sub/"])
def test_links_made_per_chunk_are_the_links_made_one_by_one(purpose, public_url):
    import random

    rng = random.Random(26)  # reproducible: hex ids as subscribers get, and odd ones
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(300)]
    ids += ["x", "ÄÖü-é", "a_b-c", PUBLIC_ID, "with.dot", "0" * 200]
    make = tokens.link_maker(public_url, SECRET, purpose)
    for public_id in ids:
        made = make(public_id)
        assert made == tokens.link(public_url, SECRET, purpose, public_id)
        if "." not in public_id:  # the compact form: byte for byte what older mails carry
            assert made == _before_link_maker(public_url, SECRET, purpose, public_id)
        token = made.rsplit("/", 1)[1]
        assert tokens.read_token(SECRET, purpose, token) == public_id


def test_an_expiring_link_made_per_chunk_still_carries_its_time():
    token = tokens.link_maker("https://h.example", SECRET, "confirm")(PUBLIC_ID).rsplit("/", 1)[1]
    assert token.count(".") == 2 and tokens.read_token(SECRET, "confirm", token) == PUBLIC_ID
