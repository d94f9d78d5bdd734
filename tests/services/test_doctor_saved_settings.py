"""Doctor reads what the pages read (issue 23): the practice details saved through the Settings
form reach `newsletter doctor` in this process and in a fresh one, its DNS check looks at the
saved domain, a fresh process sends as saved, and a variable set in the environment still wins.

Each entry point makes the effective settings (store.practice.effective_settings) and passes
them down; nothing is registered on import, so a process that imported store late or never
can't fall back to the sample sender."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
import web_helpers
from doctor_support import DOMAIN, FROM_EMAIL, StubResolver
from engine_support import ship, utc
from paths import ROOT
from pydantic import SecretStr
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import Settings, get_settings
from newsletter.store import practice
from newsletter.store.db import session_scope
from newsletter.store.models import PracticeSetting

runner = CliRunner()
PASSWORD = "a calm and long password"
SAVED = {
    "from_name": "Calm Practice",
    "from_email": FROM_EMAIL,
    "reply_to": f"hello@{DOMAIN}",
    "postal_address": "4 Quiet Lane, Harbour Town",
}
ENV_DOMAIN = "set-by-the-server.test"


def save_in_the_browser(settings: Settings, values: dict[str, str]) -> str:
    """The therapist saves `values` through the admin's Settings form; the page as then shown."""
    admin = settings.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    c, _ = web_helpers.signed_in(admin, PASSWORD)
    with c:
        token = web_helpers.csrf(c, "/admin/settings")
        saved = c.post("/admin/settings", data={"csrf_token": token, **values})
        assert saved.status_code == 303, saved.text
        return c.get("/admin/settings").text


def by_check(report: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["check"], []).append(finding)
    return found


def doctor_in_this_process(monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any], Any]:
    """`newsletter doctor --json --check sender --check dns` with a stub DNS (no internet)."""
    resolver = StubResolver()
    monkeypatch.setattr(dns.resolver, "Resolver", lambda: resolver)
    result = runner.invoke(app, ["doctor", "--json", "--check", "sender", "--check", "dns"])
    return result.exit_code, json.loads(result.stdout), resolver


def fresh_process(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGV` in a new interpreter, with this test's NEWSLETTER_* environment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_reports_the_sender_saved_in_the_browser_and_checks_its_domain(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, report, _ = doctor_in_this_process(monkeypatch)
    assert before == 1 and {f["level"] for f in by_check(report)["sender"]} >= {"error"}

    save_in_the_browser(settings, SAVED)
    code, report, resolver = doctor_in_this_process(monkeypatch)
    found = by_check(report)
    [sender] = found["sender"]
    assert sender["level"] == "ok", report
    assert "Calm Practice <news@calm-practice.test>" in sender["message"]
    assert "4 Quiet Lane, Harbour Town" in sender["message"]
    assert "saved on the Settings page" in sender["message"]
    # the DNS check looked up the saved domain (outbox: DKIM's selector can't be guessed)
    assert [(name, kind) for name, kind, _ in resolver.queries] == [
        (DOMAIN, "TXT"),
        (f"_dmarc.{DOMAIN}", "TXT"),
    ]
    assert [f["level"] for f in found["dns-spf"] + found["dns-dmarc"]] == ["ok", "ok"]
    assert "example.com" not in json.dumps(report)
    assert code == 0  # warnings only (DKIM not checked for the outbox)


@pytest.mark.slow  # a fresh `newsletter` process
def test_a_fresh_doctor_process_sees_the_saved_values(settings: Settings, tmp_path: Path) -> None:
    save_in_the_browser(settings, SAVED)
    done = fresh_process("doctor", "--json", "--check", "sender", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [sender] = by_check(json.loads(done.stdout))["sender"]
    assert sender["level"] == "ok"
    assert "Calm Practice <news@calm-practice.test>" in sender["message"]
    assert "4 Quiet Lane, Harbour Town" in sender["message"]


@pytest.mark.slow  # a fresh `newsletter` process
def test_a_fresh_process_sends_as_saved(settings: Settings, tmp_path: Path) -> None:
    """`newsletter send-test` in a new interpreter builds its backend and renderer from the
    effective settings its entry point made: the email goes out as the practice saved it."""
    ship(settings, utc(2027, 3, 1, 12))
    save_in_the_browser(settings, SAVED)
    done = fresh_process(
        "send-test",
        "myths-about-psychotherapy",
        "1",
        "--to",
        "maya@calm-practice.org",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    [path] = sorted(Path(settings.outbox_dir).glob("*.eml"))
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert str(mail["From"]) == "Calm Practice <news@calm-practice.test>"
    assert str(mail["Reply-To"]) == f"hello@{DOMAIN}"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[attr-defined]
    assert "4 Quiet Lane, Harbour Town" in text and "100 Sample Street" not in text


@pytest.mark.slow  # ends with a fresh `newsletter` process
def test_an_environment_variable_still_wins(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", f"post@{ENV_DOMAIN}")
    get_settings.cache_clear()
    server = get_settings()
    page = save_in_the_browser(server, {**SAVED, "from_email": "typed@in-the-browser.test"})
    assert "fixed by the server" in page and "NEWSLETTER_FROM_EMAIL" in page
    with session_scope(server.database_url) as db:  # and a row written behind the page's back
        db.add(PracticeSetting(key="from_email", value="sneaked@into-the-table.test"))
    practice.forget()

    _, report, resolver = doctor_in_this_process(monkeypatch)
    [sender] = by_check(report)["sender"]
    assert f"Calm Practice <post@{ENV_DOMAIN}>" in sender["message"]  # the rest still saved
    assert "4 Quiet Lane, Harbour Town" in sender["message"]
    assert {name.removeprefix("_dmarc.") for name, _, _ in resolver.queries} == {ENV_DOMAIN}

    done = fresh_process("doctor", "--json", "--check", "sender", cwd=tmp_path)
    [fresh] = by_check(json.loads(done.stdout))["sender"]
    assert f"<post@{ENV_DOMAIN}>" in fresh["message"] and "into-the-table" not in fresh["message"]
