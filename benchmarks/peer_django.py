"""django-newsletter beside us: emails/s of its own send path (`submit_newsletter`) on this machine.

    .venv/bin/python benchmarks/peer_django.py [--n 5000] [--backend locmem|smtp] [--runs 1] [--json]

The closest Python peer, set up as /work/shared/research/peer-django-newsletter.md measured it
(2026-11-25): django-newsletter 1.2.1, Django 5.2.19, sorl-thumbnail 13.4.0 (the package needs a
thumbnailer; nothing is thumbnailed), Pillow 13.0.0, aiosmtpd 1.4.6, in their own virtualenv
under var/bench-peer/ (made once with pip from the package index, then reused; without network
access to the index the run raises PeerUnavailable and says why); a minimal Django project
(`DEBUG = False`, SQLite, throttling settings unset: the package's "no sleeping" state).

Each run: a fresh SQLite file, migrated; one newsletter, one message with one 637-word HTML
article (three headings, one link, a "Read more" URL), N subscribed readers (`bulk_create`), one
submission from `Submission.from_message()` marked prepared (the admin's "Submit" button); then
`call_command("submit_newsletter")` in the same process, timed: emails/s = N / its seconds
(Django's start-up, migrating and seeding are not counted). Delivery is checked every run: every
one of the N emails arrived, and the submission is marked sent.

Backends: `locmem` (default: Django's in-memory backend, render + build every message, no I/O)
is the package's upper bound and the only one near the issue's 717-866/s (SMTP to a local sink measured
185-262/s); holding ourselves to the peer's best case keeps the ratio honest. `smtp`: Django's SMTP
backend to an aiosmtpd sink on 127.0.0.1 (its own process, counting messages) — each email its
own connection, as the package sends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_DIR = ROOT / "var" / "bench-peer"
PINS = (
    "django-newsletter==1.2.1",
    "Django==5.2.19",
    "sorl-thumbnail==13.4.0",
    "Pillow==13.0.0",
    "aiosmtpd==1.4.6",
)
INSTALL_TIMEOUT = 600.0
PIP_OPTIONS = ("--retries", "1", "--timeout", "20")  # without network: fail in a minute, not ten


class PeerUnavailable(Exception):
    """The peer's virtualenv could not be made (no network access to the index, a pin missing)."""


SETTINGS = '''\
"""The peer's minimal Django project (benchmarks/peer_django.py writes this file)."""
import os

SECRET_KEY = "bench-peer-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
SITE_ID = 1
ROOT_URLCONF = "peer_urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.auth",
    "django.contrib.sites",
    "django.contrib.admin",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "sorl.thumbnail",
    "newsletter",
]
MIDDLEWARE = []
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["PEER_DB"]}}
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
NEWSLETTER_THUMBNAIL = "sorl-thumbnail"
NEWSLETTER_USE_HTTPS = True
NEWSLETTER_CONFIRM_EMAIL = False
if os.environ.get("PEER_SMTP_PORT"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = int(os.environ["PEER_SMTP_PORT"])
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
'''

URLS = '''\
"""The peer's URLs: the newsletter's own (its emails link to them)."""
from django.urls import include, path

urlpatterns = [path("newsletter/", include("newsletter.urls"))]
'''

DRIVER = '''\
"""One peer run (benchmarks/peer_django.py writes this file): migrate, seed N, time submit_newsletter."""
import datetime as dt
import json
import os
import resource
import sys
import time

import django

django.setup()
from django.conf import settings
from django.core import mail
from django.core.management import call_command

from newsletter.models import Article, Message, Newsletter, Submission, Subscription

n = int(sys.argv[1])
for name in ("NEWSLETTER_EMAIL_DELAY", "NEWSLETTER_BATCH_DELAY", "NEWSLETTER_BATCH_SIZE"):
    assert not hasattr(settings, name), name  # throttling off: the documented "no sleeping"
call_command("migrate", verbosity=0)
WORDS = ("reading slowly is a habit worth keeping because every part of a series arrives on "
         "its own day and the reader decides when the next one should come").split()


def paragraph(start, length):
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(length)).capitalize() + "."


parts, words = [], 0
for h in range(3):
    parts.append(f"<h4>Part {h + 1}</h4>")
    for p in range(3):
        size = 70 if (h, p) != (2, 2) else 637 - words - 8
        text = paragraph(h * 7 + p, size)
        if (h, p) == (1, 1):
            text += ' See <a href="https://example.org/more">the notes</a>.'
            size += 2
        parts.append(f"<p>{text}</p>")
        words += size
html = "\\n".join(parts)
letter = Newsletter.objects.create(
    title="Slow Reading", slug="slow-reading", email="news@example.org", sender="Slow Reading",
    send_html=True,
)
Subscription.objects.bulk_create(
    Subscription(newsletter=letter, email_field=f"reader{i}@example.org",
                 name_field=f"Reader {i}" if i % 3 else None, subscribed=True)
    for i in range(n)
)
message = Message.objects.create(title="Part one", slug="part-one", newsletter=letter)
Article.objects.create(post=message, sortorder=0, title="On reading slowly", text=html,
                       url="https://example.org/read-more")
submission = Submission.from_message(message)
submission.prepared = True
submission.publish_date = submission.publish_date - dt.timedelta(minutes=1)
submission.save()
assert submission.subscriptions.count() == n

before = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
call_command("submit_newsletter", verbosity=0)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF)
submission.refresh_from_db()
outbox = len(getattr(mail, "outbox", ()))
print(json.dumps({
    "n": n,
    "seconds": seconds,
    "emails_per_s": n / seconds,
    "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    "peak_rss_mb": after.ru_maxrss / 1024,
    "outbox": outbox,
    "sent_flag": bool(submission.sent),
    "bytes_first": len(mail.outbox[0].message().as_bytes()) if outbox else None,
}))
'''

SMTP_SINK = '''\
"""The peer's SMTP sink (benchmarks/peer_django.py writes this file): aiosmtpd, counting messages;
listens on the port given, prints it once ready, and the count when it gets a line on stdin."""
import sys

from aiosmtpd.controller import Controller


class Count:
    messages = 0

    async def handle_DATA(self, server, session, envelope):
        Count.messages += 1
        return "250 OK"


controller = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print(sys.argv[1], flush=True)
sys.stdin.readline()
print(Count.messages, flush=True)
controller.stop()
'''


def peer_python(peer_dir: Path | None = None) -> Path:
    """The peer virtualenv's interpreter, made once (pip from the package index) and reused."""
    peer_dir = peer_dir or PEER_DIR
    venv = peer_dir / "venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if python.exists() and marker.exists() and marker.read_text().split() == list(PINS):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    peer_dir.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise PeerUnavailable(f"could not make the peer's virtualenv: {made.stderr[-500:]}")
    try:
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *PIP_OPTIONS,
                *PINS,
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(venv, ignore_errors=True)
        raise PeerUnavailable(
            "pip install of the peer's pins timed out (no network access?)"
        ) from None
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise PeerUnavailable(
            f"could not install the peer's pinned packages from the package index "
            f"(no network access?): {tail}"
        )
    marker.write_text("\n".join(PINS) + "\n")
    return python


def project(peer_dir: Path | None = None) -> Path:
    """The peer's minimal Django project (settings, URLs, the run's driver, the SMTP sink)."""
    folder = (peer_dir or PEER_DIR) / "project"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("peer_settings.py", SETTINGS),
        ("peer_urls.py", URLS),
        ("peer_driver.py", DRIVER),
        ("peer_smtp_sink.py", SMTP_SINK),
    ):
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return folder


def free_port() -> int:
    """A port nothing listens on now (aiosmtpd's controller needs one named)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_run(python: Path, folder: Path, n: int, backend: str) -> dict[str, Any]:
    """One fresh database, N readers, submit_newsletter timed; delivery checked."""
    tmp = Path(tempfile.mkdtemp(prefix="nl-peer-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PEER_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "peer_settings",
            "PYTHONPATH": str(folder),
            "PEER_DB": str(tmp / "peer.db"),
        }
    )
    sink: subprocess.Popen[str] | None = None
    try:
        if backend == "smtp":
            sink = subprocess.Popen(
                [str(python), str(folder / "peer_smtp_sink.py"), str(free_port())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            assert sink.stdout is not None and sink.stdin is not None
            env["PEER_SMTP_PORT"] = sink.stdout.readline().strip()
            if not env["PEER_SMTP_PORT"]:
                raise SystemExit("the peer's SMTP sink did not start")
        done = subprocess.run(
            [str(python), str(folder / "peer_driver.py"), str(n)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"peer run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_average_at_end"] = os.getloadavg()[0]
        if sink is not None:
            import psutil

            assert sink.stdin is not None and sink.stdout is not None
            times = psutil.Process(sink.pid).cpu_times()
            result["sink_cpu_s"] = times.user + times.system
            sink.stdin.write("\n")
            sink.stdin.flush()
            result["delivered"] = int(sink.stdout.readline().strip() or 0)
        else:
            result["delivered"] = result["outbox"]
        if result["delivered"] != n or not result["sent_flag"]:
            raise SystemExit(f"the peer did not deliver every email: {result}")
        return result
    finally:
        if sink is not None and sink.poll() is None:
            sink.kill()
            sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(
    n: int, backend: str = "locmem", runs: int = 1, peer_dir: Path | None = None
) -> dict[str, Any]:
    """The peer's emails/s (median of `runs`); raises PeerUnavailable without its virtualenv."""
    started = time.perf_counter()
    python = peer_python(peer_dir)
    ready = time.perf_counter() - started
    folder = project(peer_dir)
    each = [one_run(python, folder, n, backend) for _ in range(max(1, runs))]
    rates = [r["emails_per_s"] for r in each]
    return {
        "n": n,
        "backend": backend,
        "runs": each,
        "emails_per_s": statistics.median(rates),
        "emails_per_s_min": min(rates),
        "emails_per_s_max": max(rates),
        "cpu_ms_per_email": statistics.median(r["cpu_s"] for r in each) * 1000 / n,
        "virtualenv_s": ready,
        "versions": list(PINS),
        "load_average_at_start": os.getloadavg()[0],
    }


def report(r: dict[str, Any]) -> str:
    return (
        f"django-newsletter peer  backend={r['backend']}  N={r['n']:,}  runs={len(r['runs'])}\n"
        f"  emails/s, median {r['emails_per_s']:,.0f} (min {r['emails_per_s_min']:,.0f}, "
        f"max {r['emails_per_s_max']:,.0f}); sender CPU {r['cpu_ms_per_email']:.2f} ms per email; "
        f"peak RSS {max(x['peak_rss_mb'] for x in r['runs']):.0f} MB; "
        f"load average {r['load_average_at_start']:.2f}\n"
        f"  {', '.join(r['versions'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000, help="subscribers")
    parser.add_argument("--backend", choices=["locmem", "smtp"], default="locmem")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        result = run(args.n, args.backend, args.runs)
    except PeerUnavailable as exc:
        raise SystemExit(f"peer skipped: {exc}") from None
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
