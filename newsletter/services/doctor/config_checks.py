"""Doctor checks of the settings alone: secret key, public URL, sender identity, webhook key."""

from __future__ import annotations

from urllib.parse import urlsplit

from newsletter.core.config import Settings
from newsletter.services.doctor.findings import Context, Finding, error, ok, warning

MIN_SECRET_LENGTH = 32
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")
NEW_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def _default(name: str) -> object:
    return Settings.model_fields[name].default


def secret_key(ctx: Context) -> list[Finding]:
    key = ctx.settings.secret_key
    if key is None or not key.get_secret_value():
        return [
            error(
                "secret-key",
                "NEWSLETTER_SECRET_KEY is not set (the key generated into var/ is for local runs "
                f"and is lost with it): set one, e.g. from `{NEW_KEY}`, and back it up",
            )
        ]
    length = len(key.get_secret_value())
    if length < MIN_SECRET_LENGTH:
        return [
            error(
                "secret-key",
                f"NEWSLETTER_SECRET_KEY has {length} characters: use at least "
                f"{MIN_SECRET_LENGTH} random ones, e.g. from `{NEW_KEY}` (links already sent "
                "stop working when it changes)",
            )
        ]
    return [ok("secret-key", f"NEWSLETTER_SECRET_KEY is set ({length} characters)")]


def public_url(ctx: Context) -> list[Finding]:
    url = ctx.settings.public_url
    host = (urlsplit(url).hostname or "").lower()
    if host in LOCAL_HOSTS or host.endswith(".localhost"):
        return [
            error(
                "public-url",
                f"NEWSLETTER_PUBLIC_URL is {url}: links in emails would lead readers to their own "
                "machine; set it to the site's public https:// address",
            )
        ]
    if not ctx.settings.public_is_https:
        return [
            warning(
                "public-url",
                f"NEWSLETTER_PUBLIC_URL is {url} (plain http): put TLS in front (a reverse proxy "
                "with a certificate) and set it to https://…, so links and the admin cookie are "
                "encrypted",
            )
        ]
    return [ok("public-url", f"NEWSLETTER_PUBLIC_URL is {url}")]


def example_address(value: str) -> bool:
    domain = value.rsplit("@", 1)[-1].lower()
    return any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS)


SETTINGS_PAGE = "on the Settings page (/admin/settings) or in the environment"


def sender(ctx: Context) -> list[Finding]:
    """The From address, Reply-To and the postal address every email carries: the effective
    values (ctx.settings: saved on the Settings page or set in the environment), as sent."""
    s = ctx.settings
    found: list[Finding] = []
    if s.from_email == _default("from_email") or example_address(s.from_email):
        found.append(
            error(
                "sender",
                f"NEWSLETTER_FROM_EMAIL is the example {s.from_email}: set the practice's own "
                f"address {SETTINGS_PAGE}, on a domain you control (its DNS is checked below)",
            )
        )
    if s.postal_address == _default("postal_address"):
        found.append(
            error(
                "sender",
                f"NEWSLETTER_POSTAL_ADDRESS is the sample street: set the practice's postal "
                f"address {SETTINGS_PAGE} (the law in many places requires it in every newsletter)",
            )
        )
    if s.from_name == _default("from_name"):
        found.append(
            warning("sender", "NEWSLETTER_FROM_NAME is the sample name: set the practice's name")
        )
    if s.reply_to == _default("reply_to") or example_address(s.reply_to):
        found.append(
            warning(
                "sender",
                f"NEWSLETTER_REPLY_TO is the example {s.reply_to}: set where readers' replies "
                "should go",
            )
        )
    if not any(f.level == "error" for f in found):
        shown = {"from_name", "from_email", "postal_address"}
        saved = " (saved on the Settings page)" if s.saved_fields & shown else ""
        found.append(
            ok(
                "sender",
                f"sending as {s.from_name} <{s.from_email}>, postal address "
                f"{s.postal_address}{saved}",
            )
        )
    return found


def webhook(ctx: Context) -> list[Finding]:
    """SendGrid's Event Webhook must be signed: bounces and spam reports switch readers off."""
    s = ctx.settings
    how = (
        "set NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key from SendGrid "
        "(Settings > Mail Settings > Event Webhook > Signed Event Webhook)"
    )
    found: list[Finding] = []
    if s.webhook_allow_unsigned:
        found.append(
            warning(
                "webhook",
                "NEWSLETTER_WEBHOOK_ALLOW_UNSIGNED is on: anyone can post fake bounces and "
                f"unsubscribes; {how} and remove NEWSLETTER_WEBHOOK_ALLOW_UNSIGNED",
            )
        )
    key = s.sendgrid_webhook_public_key
    if not key:
        if s.mail_backend == "sendgrid":
            found.append(
                error(
                    "webhook",
                    "no webhook key: SendGrid's bounce and spam events are refused, so "
                    f"bouncing readers keep being mailed; {how}",
                )
            )
        return found
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        EventWebhook(key)
    except Exception:  # base64 or key-format errors from cryptography
        found.append(
            error(
                "webhook",
                "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key (every event "
                f"would be refused): {how}, copied whole",
            )
        )
        return found
    found.append(ok("webhook", "the SendGrid Event Webhook key is set: unsigned posts are refused"))
    return found
