"""`newsletter doctor`: every check passing and failing, the `make run` default (not ready, names
what is missing) and a configured setup (stub DNS, the SendGrid stand-in, a Redis with AOF: ready)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from doctor_support import (
    DOMAIN,
    FROM_EMAIL,
    GOOD_RECORDS,
    PRODUCTION_ENV,
    StubResolver,
    redis_server,
    webhook_public_key,
)
from paths import ROOT, free_port
from sendgrid_fake import FakeSendGrid
from smtp_server import SmtpServer, self_signed
from sqlalchemy import text
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.core.config import ENV_PREFIX, Settings, get_settings, load_settings
from newsletter.queue import liveness
from newsletter.queue.embedded import EmbeddedRedis
from newsletter.services import doctor
from newsletter.services.doctor import CHECKS, Context, Finding
from newsletter.store import db
from newsletter.store.halt import halted

runner = CliRunner()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No NEWSLETTER_* from the outside; var/ in this test's folder."""
    for key in list(__import__("os").environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NEWSLETTER_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def check(name: str, settings: Settings, **context: object) -> list[Finding]:
    return CHECKS[name](Context(settings, **context))  # type: ignore[arg-type]


def levels(findings: list[Finding]) -> list[str]:
    return [f.level for f in findings]


# --- settings ------------------------------------------------------------------------------


def test_secret_key(clean_env: None) -> None:
    [unset] = check("secret-key", load_settings())
    assert unset.level == "error" and "NEWSLETTER_SECRET_KEY is not set" in unset.message
    [short] = check("secret-key", load_settings(secret_key="short-key"))
    assert short.level == "error" and "9 characters" in short.message
    [good] = check("secret-key", load_settings(secret_key="x" * 40))
    assert good.level == "ok" and "x" * 8 not in good.message  # never echoes the key


@pytest.mark.parametrize(
    ("url", "level", "says"),
    [
        ("http://127.0.0.1:8000", "error", "their own machine"),
        ("https://localhost", "error", "their own machine"),
        ("http://news.calm-practice.test", "warning", "plain http"),
        ("https://news.calm-practice.test", "ok", "https://news.calm-practice.test"),
    ],
)
def test_public_url(clean_env: None, url: str, level: str, says: str) -> None:
    [finding] = check("public-url", load_settings(public_url=url))
    assert finding.level == level and says in finding.message


def test_sender_defaults_and_configured(clean_env: None) -> None:
    found = check("sender", load_settings())
    assert levels(found) == ["error", "error", "warning", "warning"]
    assert "NEWSLETTER_FROM_EMAIL" in found[0].message
    assert "NEWSLETTER_POSTAL_ADDRESS" in found[1].message
    found = check("sender", load_settings(from_email="me@example.org", postal_address="1 Road"))
    assert levels(found) == ["error", "warning", "warning"]  # example.org is still an example
    found = check(
        "sender",
        load_settings(
            from_email=FROM_EMAIL,
            from_name="Calm Practice",
            reply_to=f"hi@{DOMAIN}",
            postal_address="4 Quiet Lane",
        ),
    )
    assert levels(found) == ["ok"] and FROM_EMAIL in found[0].message


def test_webhook_key(clean_env: None) -> None:
    [missing] = check("webhook", load_settings(mail_backend="sendgrid"))
    assert missing.level == "error" and "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY" in missing.message
    assert check("webhook", load_settings(mail_backend="smtp")) == []  # no SendGrid, no webhook
    unsigned = check("webhook", load_settings(mail_backend="sendgrid", webhook_allow_unsigned=True))
    assert levels(unsigned) == ["warning", "error"]
    assert "NEWSLETTER_WEBHOOK_ALLOW_UNSIGNED is on" in unsigned[0].message
    assert (
        "set NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key" in unsigned[0].message
    )
    [bad] = check(
        "webhook",
        load_settings(mail_backend="sendgrid", sendgrid_webhook_public_key="bm90IGEga2V5"),
    )
    assert bad.level == "error" and "not a valid public key" in bad.message
    key = webhook_public_key()
    [good] = check(
        "webhook", load_settings(mail_backend="sendgrid", sendgrid_webhook_public_key=key)
    )
    assert good.level == "ok"


# --- mail backends -------------------------------------------------------------------------


def test_sendgrid_key_works_through_a_sandbox_send(
    sg: tuple[Settings, FakeSendGrid], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, fake = sg
    settings = load_settings(from_email=FROM_EMAIL)
    [good] = check("mail", settings)
    assert good.level == "ok" and fake.url in good.message
    [request] = fake.requests
    assert request.body["mail_settings"]["sandbox_mode"]["enable"] is True
    assert request.status == 200 and not request.problems  # sandbox: validated, not delivered
    assert request.emails == [FROM_EMAIL]
    assert fake.accepted == [request] and not request.message_id  # nothing to deliver


def test_sendgrid_refused_key_is_reported_without_halting(
    sg: tuple[Settings, FakeSendGrid],
) -> None:
    settings, fake = sg
    [refused] = check("mail", load_settings(sendgrid_api_key="SG.wrong"))
    assert refused.level == "error" and "refused the API key" in refused.message
    assert "SG.wrong" not in refused.message
    with db.session_scope(settings.database_url) as session:
        assert halted(session, settings) is None  # the doctor looks, it does not stop sending
    fake.server_error(500)
    [failed] = check("mail", settings)
    assert failed.level == "error" and "did not accept a sandbox send" in failed.message
    [unset] = check("mail", load_settings(sendgrid_api_key=""))
    assert unset.level == "error" and "NEWSLETTER_SENDGRID_API_KEY is not set" in unset.message


def test_smtp_ehlo_starttls_and_auth(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    with SmtpServer(tls=(cert, key), login=("mailer", "s3cret")) as server:
        untrusted = load_settings(mail_backend="smtp", smtp_url=server.url)
        [tls] = check("mail", untrusted)  # the throwaway certificate is not trusted yet
        assert tls.level == "error" and "TLS with the SMTP server" in tls.message
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now it is
        [good] = check("mail", load_settings(mail_backend="smtp", smtp_url=server.url))
        assert good.level == "ok" and "logged in" in good.message
        wrong = server.url.replace("s3cret", "wrong")
        [refused] = check("mail", load_settings(mail_backend="smtp", smtp_url=wrong))
        assert refused.level == "error" and "refused the login" in refused.message
        assert "wrong" not in refused.message  # the password is never repeated
        assert server.handler.received == []  # no mail sent
    closed = f"smtp://127.0.0.1:{free_port()}"
    [down] = check("mail", load_settings(mail_backend="smtp", smtp_url=closed))
    assert down.level == "error" and "cannot reach the SMTP server" in down.message
    [unset] = check("mail", load_settings(mail_backend="smtp"))
    assert unset.level == "error" and "NEWSLETTER_SMTP_URL is not set" in unset.message


def test_outbox_is_not_for_production(clean_env: None) -> None:
    [finding] = check("mail", load_settings())
    assert finding.level == "error" and "nobody receives them" in finding.message


# --- Redis, database, series, beat and workers ---------------------------------------------


def test_redis_with_aof_and_noeviction(clean_env: None, tmp_path: Path) -> None:
    with redis_server(tmp_path / "aof", "--appendonly", "yes", "--save", "") as url:
        [good] = check("redis", load_settings(redis_url=url))
        assert good.level == "ok" and "AOF" in good.message
    with redis_server(tmp_path / "rdb", "--appendonly", "no", "--save", "900", "1") as url:
        [good] = check("redis", load_settings(redis_url=url))
        assert good.level == "ok" and "RDB" in good.message


def test_redis_without_persistence_or_evicting(clean_env: None, tmp_path: Path) -> None:
    args = ("--appendonly", "no", "--save", "", "--maxmemory-policy", "allkeys-lru")
    with redis_server(tmp_path / "bad", *args) as url:
        found = check("redis", load_settings(redis_url=url))
    assert levels(found) == ["error", "error"]
    assert "appendonly yes" in found[0].message
    assert "maxmemory-policy is allkeys-lru" in found[1].message
    down = f"redis://127.0.0.1:{free_port()}/0"
    [finding] = check("redis", load_settings(redis_url=down))
    assert finding.level == "error" and "Redis does not answer" in finding.message
    [none] = check("redis", load_settings())  # nothing configured, no `newsletter run`
    assert none.level == "error" and "newsletter run" in none.message


def test_migrations(settings: Settings) -> None:
    [current] = check("migrations", settings)
    assert current.level == "ok"
    engine = db.get_engine(settings.database_url)
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
        [behind] = check("migrations", settings)
        assert behind.level == "error" and "run `newsletter init`" in behind.message
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
        [ahead] = check("migrations", settings)
        assert ahead.level == "error" and "newer version" in ahead.message
    finally:  # the PostgreSQL database is shared by the session's tests: leave it at head
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_migrations_without_a_database(clean_env: None, tmp_path: Path) -> None:
    path = tmp_path / "none" / "newsletter.db"
    [finding] = check("migrations", load_settings(database_url=f"sqlite:///{path}"))
    assert finding.level == "error" and "run `newsletter init`" in finding.message
    assert not path.parent.exists()  # the doctor creates nothing


def test_files_warns_about_a_database_or_key_file_others_can_read(
    clean_env: None, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "newsletter.db"
    settings = load_settings(database_url=f"sqlite:///{path}", secret_key=None)
    db.upgrade(settings.database_url)
    db.dispose_all()
    settings.secret  # noqa: B018  # generates var/secret_key, 0600
    [fine] = check("files", settings)
    assert fine.level == "ok"
    path.chmod(0o644)
    [loose] = check("files", settings)
    assert loose.level == "warning" and f"the database {path} is mode 0644" in loose.message
    assert f"chmod 600 {path}" in loose.message
    key = settings.var_dir / "secret_key"
    key.chmod(0o640)
    assert [f.message.split(" is mode")[0] for f in check("files", settings)] == [
        f"the database {path}",
        f"the secret key file {key}",
    ]
    path.chmod(0o600)
    key.chmod(0o600)
    assert levels(check("files", settings)) == ["ok"]


def test_files_on_postgresql_looks_at_the_key_file_only(clean_env: None, tmp_path: Path) -> None:
    settings = load_settings(
        database_url="postgresql+psycopg://u@db.invalid/n", secret_key="k" * 40
    )
    [finding] = check("files", settings)
    assert finding.level == "ok"  # nothing opened: no database file, no key file generated
    assert not (settings.var_dir / "secret_key").exists()


def test_series_files(clean_env: None, tmp_path: Path) -> None:
    base = {"schedules_dir": ROOT / "schedules", "templates_dir": ROOT / "templates"}
    [good] = check("series", load_settings(**base))
    assert good.level == "ok" and "2 series" in good.message
    broken = tmp_path / "schedules" / "broken"
    broken.mkdir(parents=True)
    (broken / "series.yaml").write_text("slug: Broken Slug\ntitle: x\n")
    [bad] = check("series", load_settings(**{**base, "schedules_dir": tmp_path / "schedules"}))
    assert bad.level == "error" and "series.yaml" in bad.message
    assert "newsletter series validate" in bad.message


def test_beat_and_workers(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    prefix = settings.redis_prefix
    [never] = check("beat", settings)
    assert never.level == "error" and "never ticked" in never.message
    [none] = check("workers", settings)
    assert none.level == "error" and "newsletter worker" in none.message
    now = liveness.redis_now(client)
    liveness.record_tick(client, prefix, {"due": 0}, at=now - 600)
    [silent] = check("beat", settings)
    assert silent.level == "error" and "10 min ago" in silent.message
    liveness.record_tick(client, prefix, {"due": 0}, at=now - 40)
    liveness.heartbeat(client, prefix, "celery@one", at=now - 5)
    [ticking] = check("beat", settings)
    assert ticking.level == "ok" and "40 s ago" in ticking.message
    [alive] = check("workers", settings)
    assert alive.level == "ok" and "1 worker" in alive.message
    client.close()


# --- DNS -----------------------------------------------------------------------------------


def dns_findings(settings: Settings, resolver: StubResolver) -> dict[str, Finding]:
    found = check("dns", settings, resolver=resolver, dns_timeout=2.5)
    return {f.check: f for f in found}


def test_dns_all_present(clean_env: None) -> None:
    resolver = StubResolver()
    found = dns_findings(load_settings(from_email=FROM_EMAIL, mail_backend="sendgrid"), resolver)
    assert {name: f.level for name, f in found.items()} == {
        "dns-spf": "ok",
        "dns-dkim": "ok",
        "dns-dmarc": "ok",
    }
    assert "include:sendgrid.net" in found["dns-spf"].message
    assert {lifetime for _, _, lifetime in resolver.queries} == {2.5}  # every lookup has a timeout


def test_dns_missing_records(clean_env: None) -> None:
    found = dns_findings(
        load_settings(from_email=FROM_EMAIL, mail_backend="sendgrid"), StubResolver({})
    )
    assert found["dns-spf"].level == "warning"  # SendGrid's SPF is on its own subdomain
    assert found["dns-dkim"].level == "error" and "s1._domainkey" in found["dns-dkim"].message
    assert found["dns-dmarc"].level == "error" and "v=DMARC1" in found["dns-dmarc"].message
    only_s1 = {k: v for k, v in GOOD_RECORDS.items() if not k[0].startswith("s2.")}
    found = dns_findings(
        load_settings(from_email=FROM_EMAIL, mail_backend="sendgrid"), StubResolver(only_s1)
    )
    assert (
        found["dns-dkim"].level == "error"
        and f"s2._domainkey.{DOMAIN}" in found["dns-dkim"].message
        and "s1._domainkey" not in found["dns-dkim"].message
    )
    smtp = dns_findings(load_settings(from_email=FROM_EMAIL, mail_backend="smtp"), StubResolver({}))
    assert smtp["dns-spf"].level == "error" and smtp["dns-dkim"].level == "warning"


def test_dns_two_spf_records_and_timeouts(clean_env: None) -> None:
    records = {**GOOD_RECORDS, (DOMAIN, "TXT"): ['"v=spf1 -all"', '"v=spf1 include:x ~all"']}
    settings = load_settings(from_email=FROM_EMAIL, mail_backend="sendgrid")
    found = dns_findings(settings, StubResolver(records))
    assert found["dns-spf"].level == "error" and "merge" in found["dns-spf"].message
    found = dns_findings(settings, StubResolver(slow={f"_dmarc.{DOMAIN}"}))
    assert (
        found["dns-dmarc"].level == "warning" and "could not look up" in found["dns-dmarc"].message
    )
    assert found["dns-spf"].level == "ok"  # the other lookups still ran
    [example] = check("dns", load_settings(), resolver=StubResolver())
    assert example.level == "warning" and "example domain" in example.message


# --- the whole report ----------------------------------------------------------------------


def test_a_crashing_check_becomes_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: Context) -> list[Finding]:
        raise RuntimeError("boom")

    monkeypatch.setitem(CHECKS, "sender", broken)
    report = doctor.run(Context(load_settings()), ["sender", "public-url"])
    assert [f.check for f in report.findings] == ["public-url", "sender"]  # table order
    assert report.findings[1].message == "the check failed: RuntimeError: boom"
    with pytest.raises(KeyError, match="no check nonsense"):
        doctor.run(Context(load_settings()), ["nonsense"])
    result = runner.invoke(app, ["doctor", "--check", "nonsense"])
    assert result.exit_code == 2 and "no check nonsense (checks: secret-key," in result.output


def test_make_run_default_is_not_ready_and_says_what_is_missing(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh clone after `make run`: SQLite, embedded Redis, outbox; beat and a worker alive."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_VAR_DIR", "var")
    monkeypatch.setenv("NEWSLETTER_SCHEDULES_DIR", str(ROOT / "schedules"))
    monkeypatch.setenv("NEWSLETTER_TEMPLATES_DIR", str(ROOT / "templates"))
    assert runner.invoke(app, ["init"]).exit_code == 0
    server = EmbeddedRedis(tmp_path / "var" / "redis")  # as `newsletter run` starts it
    server.start()
    try:
        (tmp_path / "var" / "redis" / "url").write_text(server.url)
        client = redis.Redis.from_url(server.url)
        liveness.record_tick(client, "nl:", {"due": 0})
        liveness.heartbeat(client, "nl:", "celery@laptop")
        client.close()
        result = runner.invoke(app, ["doctor", "--json"])
        human = runner.invoke(app, ["doctor"])
    finally:
        server.stop()
        db.dispose_all()
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    errors = {
        (f["check"], f["message"].split(" ")[0])
        for f in report["findings"]
        if f["level"] == "error"
    }
    assert errors == {
        ("secret-key", "NEWSLETTER_SECRET_KEY"),
        ("public-url", "NEWSLETTER_PUBLIC_URL"),
        ("sender", "NEWSLETTER_FROM_EMAIL"),
        ("sender", "NEWSLETTER_POSTAL_ADDRESS"),
        ("mail", "NEWSLETTER_MAIL_BACKEND"),
    }
    by_check = {f["check"]: f["level"] for f in report["findings"]}
    assert by_check["migrations"] == by_check["series"] == by_check["files"] == "ok"
    assert by_check["beat"] == by_check["workers"] == "ok"
    assert [f["level"] for f in report["findings"] if f["check"] == "redis"] == ["warning", "ok"]
    assert human.exit_code == 1 and "not ready: 5 error(s)" in human.output


def test_configured_setup_is_ready(
    sg: tuple[Settings, FakeSendGrid], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production-like: SendGrid (the stand-in), signed webhook, a Redis with AOF, beat and a
    worker alive, DNS authenticated (stub resolver). Exits 0 with no error."""
    import dns.resolver

    settings, fake = sg
    with redis_server(tmp_path / "redis", "--appendonly", "yes") as url:
        for key, value in PRODUCTION_ENV.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NEWSLETTER_REDIS_URL", url)
        monkeypatch.setenv("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY", webhook_public_key())
        get_settings.cache_clear()
        client = redis.Redis.from_url(url)
        liveness.record_tick(client, settings.redis_prefix, {"due": 0})
        liveness.heartbeat(client, settings.redis_prefix, "celery@server")
        client.close()
        resolver = StubResolver()
        monkeypatch.setattr(dns.resolver, "Resolver", lambda: resolver)
        result = runner.invoke(app, ["doctor", "--json"])
        beat_only = runner.invoke(app, ["doctor", "--check", "beat"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["errors"] == 0
    assert {f["check"] for f in report["findings"]} >= {*CHECKS} - {"dns"}
    assert report["warnings"] == 0, report
    assert [r.body["mail_settings"]["sandbox_mode"]["enable"] for r in fake.requests] == [True]
    assert [(name, kind) for name, kind, _ in resolver.queries] == [
        (DOMAIN, "TXT"),
        (f"s1._domainkey.{DOMAIN}", "CNAME"),
        (f"s2._domainkey.{DOMAIN}", "CNAME"),
        (f"_dmarc.{DOMAIN}", "TXT"),
    ]
    assert beat_only.exit_code == 0 and "beat" in beat_only.output
    assert "ready: 0 error(s)" in beat_only.output
