"""`GET /` while 40 wrong admin passwords arrive at once from 40 addresses (issue 22's goal:
`/` answers in under 200 ms meanwhile).

    .venv/bin/python benchmarks/login_flood.py [--attackers 40] [--probes 20] [--json]

Runs the web app as `newsletter web` does (uvicorn, proxy headers trusted from 127.0.0.1, so the
benchmark names each attacker's address with X-Forwarded-For) on a temp SQLite database with a
stored Argon2 password (`admin set-password`) and a Redis prefix of its own on 127.0.0.1:6379
(deleted afterwards). Measures `/` first on the idle server, then while the attackers' logins are
in flight (each attacker fetched the login page for its CSRF token beforehand; the probes start
once the logins are sent and stop when the last one has answered). Prints the median and the
slowest `/` of each phase, and how long the 40 logins took. The tests count instead of timing:
tests/web/test_admin_login.py checks that Argon2 runs off the event loop, two at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "the benchmark's admin password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def measure(attackers: int = 40, probes: int = 20) -> dict[str, float]:
    prefix = f"nlbenchlogin{os.getpid()}:"
    with tempfile.TemporaryDirectory(prefix="nl-login-flood-") as tmp:
        port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "NEWSLETTER_REDIS_URL": "redis://127.0.0.1:6379/0",
            "NEWSLETTER_REDIS_PREFIX": prefix,
            "NEWSLETTER_VAR_DIR": f"{tmp}/var",
            "NEWSLETTER_SECRET_KEY": secrets.token_urlsafe(32),
            "NEWSLETTER_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "NEWSLETTER_NEW_ADMIN_PASSWORD": PASSWORD,
        }
        newsletter = [sys.executable, "-m", "newsletter"]
        subprocess.run([*newsletter, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [*newsletter, "admin", "set-password"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        with Path(tmp, "web.log").open("wb") as log:
            web = subprocess.Popen(
                [*newsletter, "web", "--port", str(port)], env=env, stdout=log, stderr=log
            )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(Path(tmp, "web.log").read_text())
                time.sleep(0.2)
            return _flood(base, attackers, probes)
        finally:
            web.terminate()
            web.wait(timeout=30)
            r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
            keys = list(r.scan_iter(match=f"{prefix}*"))
            if keys:
                r.delete(*keys)
            r.close()


def _flood(base: str, attackers: int, probes: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=120) as probe:
        _get(probe, "/")  # warm the templates
        idle = [_get(probe, "/") for _ in range(probes)]
        clients = []
        for n in range(attackers):
            claim = {"X-Forwarded-For": f"198.51.{100 + n // 250}.{n % 250 + 1}"}
            c = httpx.Client(base_url=base, headers=claim, timeout=300)
            token = CSRF_RE.search(c.get("/admin/login").text)
            assert token, "no CSRF token on the login page"
            clients.append((c, token.group(1)))
        statuses: list[int] = []

        def guess(c: httpx.Client, token: str) -> None:
            r = c.post("/admin/login", data={"csrf_token": token, "password": "a wrong guess"})
            statuses.append(r.status_code)

        threads = [threading.Thread(target=guess, args=pair) for pair in clients]
        start = time.perf_counter()
        for t in threads:
            t.start()
        during: list[float] = []
        while any(t.is_alive() for t in threads) or len(during) < 1:
            during.append(_get(probe, "/"))
        for t in threads:
            t.join()
        logins = time.perf_counter() - start
        for c, _ in clients:
            c.close()
    if statuses != [401] * attackers:
        raise RuntimeError(f"expected {attackers} refusals, got {sorted(set(statuses))}")
    return {
        "attackers": attackers,
        "load_average": os.getloadavg()[0],
        "idle_median_ms": statistics.median(idle) * 1000,
        "idle_max_ms": max(idle) * 1000,
        "flood_probes": len(during),
        "flood_median_ms": statistics.median(during) * 1000,
        "flood_max_ms": max(during) * 1000,
        "logins_s": logins,
    }


def report(f: dict[str, float]) -> str:
    return (
        f"`GET /` idle: median {f['idle_median_ms']:.0f} ms, max {f['idle_max_ms']:.0f} ms; "
        f"during {int(f['attackers'])} parallel wrong logins ({int(f['flood_probes'])} requests, "
        f"the logins took {f['logins_s']:.1f} s): median {f['flood_median_ms']:.0f} ms, "
        f"max {f['flood_max_ms']:.0f} ms (goal < 200 ms; load average "
        f"{f['load_average']:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=40)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.attackers, args.probes)
    print(json.dumps(figures) if args.json else report(figures))


if __name__ == "__main__":
    main()
