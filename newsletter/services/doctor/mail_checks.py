"""Doctor check of the mail backend: configured and reachable, without delivering anything.

SendGrid: one request in sandbox mode (`mail_settings.sandbox_mode`: SendGrid checks the key and
the body, then delivers nothing) to the From address, against NEWSLETTER_SENDGRID_HOST. A refused
key is reported here only: unlike a real send, the doctor does not halt sending. SMTP: connect,
EHLO, STARTTLS when offered, AUTH when the URL has a user, then QUIT; no MAIL FROM.
"""

from __future__ import annotations

import secrets
import smtplib
import ssl

from newsletter.mail.message import TEST, Accepted, Message, Recipient, SendingHalted
from newsletter.services.doctor.findings import Context, Finding, error, ok

TIMEOUT_SECONDS = 10.0


def _sendgrid(ctx: Context) -> list[Finding]:
    from newsletter.mail.backends.sendgrid import SendGridBackend

    s = ctx.settings
    if s.sendgrid_api_key is None or not s.sendgrid_api_key.get_secret_value():
        return [
            error(
                "mail",
                "NEWSLETTER_SENDGRID_API_KEY is not set: create a key with the Mail Send "
                "permission in SendGrid (Settings > API Keys) and set it",
            )
        ]
    backend = SendGridBackend(s, timeout=TIMEOUT_SECONDS, throttle=False)
    message = Message(
        kind=TEST,
        subject="newsletter doctor: sandbox check",
        html="<p>Sandbox check by <code>newsletter doctor</code>; never delivered.</p>",
        text="Sandbox check by newsletter doctor; never delivered.",
        categories=("doctor",),
        sandbox=True,
    )
    to = Recipient(f"doctor-{secrets.token_hex(6)}", s.from_email, None, "")
    try:
        [outcome] = backend.send(message, [to])
    except SendingHalted as exc:
        return [
            error(
                "mail",
                f"SendGrid refused the API key ({exc.reason}): create a new key with the Mail "
                "Send permission and set NEWSLETTER_SENDGRID_API_KEY",
            )
        ]
    if isinstance(outcome, Accepted):
        return [ok("mail", f"SendGrid accepted a sandbox send at {s.sendgrid_host}")]
    return [
        error(
            "mail",
            f"SendGrid at {s.sendgrid_host} did not accept a sandbox send ({outcome.reason}): "
            "check NEWSLETTER_SENDGRID_HOST, the key's permissions and the From address "
            "(a verified sender or an authenticated domain)",
        )
    ]


def _smtp(ctx: Context) -> list[Finding]:
    from newsletter.mail.backends.smtp import SmtpBackend, scrub

    if not ctx.settings.smtp_url:
        return [
            error(
                "mail",
                "NEWSLETTER_SMTP_URL is not set: set smtp://user:password@host:587 "
                "(or smtps://… for TLS from the start)",
            )
        ]
    backend = SmtpBackend(ctx.settings)
    where = f"{backend.server.host}:{backend.server.port}"
    try:
        backend.probe()  # EHLO, STARTTLS when offered, AUTH when a user is given, QUIT
    except smtplib.SMTPAuthenticationError as exc:
        return [
            error(
                "mail",
                f"the SMTP server at {where} refused the login ({exc.smtp_code}): check the user "
                "and password in NEWSLETTER_SMTP_URL (percent-encode special characters)",
            )
        ]
    except smtplib.SMTPNotSupportedError:
        return [
            error(
                "mail",
                f"the SMTP server at {where} offers no AUTH on this connection: use its "
                "submission port (587 with STARTTLS, or smtps:// on 465)",
            )
        ]
    except ssl.SSLError as exc:
        return [
            error(
                "mail",
                f"TLS with the SMTP server at {where} failed ({scrub(str(exc))[:160]}): use the "
                "host name its certificate names, and a certificate signed by a known authority",
            )
        ]
    except (OSError, smtplib.SMTPException) as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}")[:200]
        return [
            error(
                "mail",
                f"cannot reach the SMTP server at {where} ({reason}): check the host and port in "
                "NEWSLETTER_SMTP_URL and that this machine may connect to it",
            )
        ]
    login = "logged in" if backend.server.user is not None else "no login configured"
    return [ok("mail", f"the SMTP server at {where} answered EHLO ({login})")]


def _outbox(ctx: Context) -> list[Finding]:
    return [
        error(
            "mail",
            f"NEWSLETTER_MAIL_BACKEND is outbox: emails are only written to "
            f"{ctx.settings.outbox_dir} and nobody receives them; set it to sendgrid (with "
            "NEWSLETTER_SENDGRID_API_KEY) or smtp (with NEWSLETTER_SMTP_URL)",
        )
    ]


BACKEND_CHECKS = {"sendgrid": _sendgrid, "smtp": _smtp, "outbox": _outbox}


def mail(ctx: Context) -> list[Finding]:
    return BACKEND_CHECKS[ctx.settings.mail_backend](ctx)
