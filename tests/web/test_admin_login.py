"""The login under a flood of wrong passwords: Argon2 in worker threads, at most auth.HASH_SLOTS
at once, the event loop free to answer `/` meanwhile (issue 22); the page when the environment
password was replaced by a stored one."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr
from servers import uvicorn_thread
from waiting import wait_for
from web_helpers import csrf, csrf_in, sign_in, signed_in

from newsletter.core.config import Settings
from newsletter.services import auth
from newsletter.store.db import session_scope
from newsletter.web.app import create_app

STORED = "the stored admin password"
ATTACKERS = 40


class WatchedHasher(PasswordHasher):
    """The real Argon2 hasher, noting which thread runs each check and how many run at once;
    the checks wait at `gate` until the test opens it (so the test sees them in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.threads: set[int] = set()
        self.gate = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.get_ident())
        try:
            self.gate.wait(timeout=60)  # a deadline against hanging, not a timing assertion
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.slow  # a uvicorn server and 40 client threads
def test_forty_wrong_passwords_run_off_the_loop_two_at_a_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 wrong passwords from 40 addresses (named by this test as the trusted proxy) while `/`
    is asked for: `/` answers while two checks are held inside Argon2 and 38 wait for a slot;
    no check ran on the event loop's thread; never more than HASH_SLOTS at once."""
    with session_scope(settings.database_url) as db:
        auth.set_password(db, STORED)
    hasher = WatchedHasher()
    monkeypatch.setattr(auth, "_hasher", hasher)
    # Plain http, as behind a proxy that ends TLS: the CSRF cookie is not marked Secure.
    app = create_app(settings.model_copy(update={"public_url": "http://127.0.0.1:8000"}))
    with uvicorn_thread(app, forwarded_allow_ips="127.0.0.1") as (base, loop_thread):
        clients = []
        for n in range(ATTACKERS):
            claim = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
            c = httpx.Client(base_url=base, headers=claim, timeout=120)
            clients.append((c, csrf(c, "/admin/login")))
        answers: list[int] = []

        def guess(c: httpx.Client, token: str) -> None:
            r = c.post("/admin/login", data={"csrf_token": token, "password": "wrong guess"})
            answers.append(r.status_code)

        threads = [threading.Thread(target=guess, args=pair) for pair in clients]
        for t in threads:
            t.start()
        try:
            wait_for(
                lambda: (
                    (stats := auth.hash_slots.statistics()).borrowed_tokens == auth.HASH_SLOTS
                    and stats.tasks_waiting == ATTACKERS - auth.HASH_SLOTS
                ),
                "two checks in their slots and the others waiting for one",
                every=0.01,
            )
            home = httpx.get(base + "/", timeout=30)
            assert home.status_code == 200 and "<form" in home.text
            assert hasher.running == auth.HASH_SLOTS and hasher.calls == auth.HASH_SLOTS
        finally:
            hasher.gate.set()
            for t in threads:
                t.join(timeout=120)
        assert answers == [401] * ATTACKERS
        assert hasher.calls == ATTACKERS and hasher.peak == auth.HASH_SLOTS
        assert loop_thread not in hasher.threads
        assert auth.hash_slots.statistics().borrowed_tokens == 0
        # 40 addresses failing is an attack: each pays a wait after one failure, but the owner,
        # from an address that has not failed, signs in at once.
        owner = httpx.Client(base_url=base, headers={"X-Forwarded-For": "192.0.2.10"})
        sign_in(owner, STORED)
        for c, _ in [*clients, (owner, "")]:
            c.close()


def test_the_page_says_when_the_environment_password_no_longer_signs_in(
    settings: Settings,
) -> None:
    env = settings.model_copy(update={"admin_password": SecretStr("the environment password")})
    c, _ = signed_in(env, "the environment password")
    c.cookies.clear()
    assert "data-env-password" not in c.get("/admin/login").text
    with session_scope(settings.database_url) as db:
        auth.set_password(db, STORED)
    page = c.get("/admin/login").text
    notice = re.search(r'data-env-password="ignored">(.*?)</p>', page, re.S)
    assert notice and "NEWSLETTER_ADMIN_PASSWORD" in notice.group(1)
    token = csrf_in(page)
    refused = c.post(
        "/admin/login", data={"csrf_token": token, "password": "the environment password"}
    )
    assert refused.status_code == 401 and 'data-env-password="ignored"' in refused.text
    ok = c.post("/admin/login", data={"csrf_token": token, "password": STORED})
    assert ok.status_code == 303
