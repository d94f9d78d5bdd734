"""Doctor checks of the From domain's DNS: SPF, DKIM (SendGrid's s1/s2._domainkey CNAMEs) and DMARC.

Gmail and Yahoo refuse or junk bulk mail that is not authenticated: DKIM signed for the From
domain and a DMARC record are the minimum; SPF on the domain itself matters for SMTP relays
(SendGrid's own SPF sits on its return-path subdomain, so it is a warning only). Every lookup
has a timeout; a lookup that times out is a warning ("could not check"), never a pass.
"""

from __future__ import annotations

from typing import Any

from newsletter.services.doctor.config_checks import example_address
from newsletter.services.doctor.findings import Context, Finding, error, ok, warning

SENDGRID_SELECTORS = ("s1", "s2")


class _Unanswered(Exception):
    """The lookup failed for another reason than "no such record" (timeout, no server)."""


def _records(ctx: Context, name: str, rdtype: str) -> list[str]:
    """The records' texts ([] when the name or the type does not exist)."""
    import dns.exception
    import dns.resolver

    try:
        answer: Any = ctx.dns().resolve(name, rdtype, lifetime=ctx.dns_timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout:
        raise _Unanswered(f"no answer within {ctx.dns_timeout:g} s") from None
    except dns.exception.DNSException as exc:
        raise _Unanswered(f"{type(exc).__name__}: {exc}"[:160]) from None
    texts = []
    for rdata in answer:
        strings = getattr(rdata, "strings", None)  # TXT: the character-strings, joined
        if strings is not None:
            texts.append(b"".join(strings).decode("utf-8", "replace"))
        else:
            texts.append(rdata.to_text().rstrip(".").lower())
    return texts


def _spf(ctx: Context, domain: str) -> Finding:
    found = [t for t in _records(ctx, domain, "TXT") if t.lower().startswith("v=spf1")]
    if len(found) > 1:
        return error(
            "dns-spf",
            f"{domain} has {len(found)} SPF records (receivers then ignore them all): merge "
            "them into one TXT record",
        )
    if not found:
        how = (
            "add a TXT record `v=spf1 include:<your provider> ~all` on " + domain
            if ctx.settings.mail_backend != "sendgrid"
            else f"SendGrid's domain authentication covers SPF on its own subdomain; a TXT "
            f"`v=spf1 include:sendgrid.net ~all` on {domain} also helps older receivers"
        )
        level = warning if ctx.settings.mail_backend == "sendgrid" else error
        return level("dns-spf", f"no SPF record on {domain}: {how}")
    return ok("dns-spf", f"SPF on {domain}: {found[0][:120]}")


def _dkim(ctx: Context, domain: str) -> Finding:
    if ctx.settings.mail_backend != "sendgrid":
        return warning(
            "dns-dkim",
            f"DKIM not checked (the selector depends on your SMTP provider): make sure it signs "
            f"mail for {domain} and publishes its key under <selector>._domainkey.{domain}",
        )
    missing = []
    for selector in SENDGRID_SELECTORS:
        name = f"{selector}._domainkey.{domain}"
        cname = _records(ctx, name, "CNAME")
        if not cname and not any("p=" in t for t in _records(ctx, name, "TXT")):
            missing.append(name)
    if missing:
        return error(
            "dns-dkim",
            f"no DKIM record at {' and '.join(missing)}: authenticate {domain} in SendGrid "
            "(Settings > Sender Authentication) and add the CNAME records it shows",
        )
    return ok("dns-dkim", f"DKIM: SendGrid's s1/s2._domainkey.{domain} records are there")


def _dmarc(ctx: Context, domain: str) -> Finding:
    name = f"_dmarc.{domain}"
    found = [t for t in _records(ctx, name, "TXT") if t.upper().startswith("V=DMARC1")]
    if not found:
        return error(
            "dns-dmarc",
            f"no DMARC record at {name}: add a TXT record `v=DMARC1; p=none; "
            f"rua=mailto:you@{domain}` (Gmail and Yahoo expect one from bulk senders)",
        )
    return ok("dns-dmarc", f"DMARC at {name}: {found[0][:120]}")


def dns_records(ctx: Context) -> list[Finding]:
    domain = ctx.settings.from_email.rsplit("@", 1)[-1].lower().rstrip(".")
    if example_address(ctx.settings.from_email):
        return [
            warning(
                "dns", f"DNS not checked: {domain} is an example domain (see NEWSLETTER_FROM_EMAIL)"
            )
        ]
    found = []
    for check in (_spf, _dkim, _dmarc):
        try:
            found.append(check(ctx, domain))
        except _Unanswered as exc:
            name = check.__name__.strip("_")
            found.append(
                warning(
                    f"dns-{name}",
                    f"could not look up the {name.upper()} record for {domain} ({exc}): check "
                    "that this machine can resolve names, or check the record yourself",
                )
            )
    return found
