"""`newsletter doctor`: is this deployment ready to send for years? One table of checks, run in order.

Each check takes a Context and returns findings (error / warning / ok, one line saying what to do).
A check that crashes becomes an error finding naming the exception: the doctor always finishes.
Any error means "not ready" (the command exits 1); warnings are advice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from newsletter.services.doctor.access_checks import admin_password
from newsletter.services.doctor.config_checks import public_url, secret_key, sender, webhook
from newsletter.services.doctor.dns_checks import dns_records
from newsletter.services.doctor.file_checks import file_modes
from newsletter.services.doctor.findings import (
    ERROR,
    OK,
    WARNING,
    Context,
    Finding,
    Resolver,
    error,
)
from newsletter.services.doctor.mail_checks import mail
from newsletter.services.doctor.runtime_checks import (
    beat,
    migrations,
    redis_server,
    sending,
    series_files,
    webhook_events,
    workers,
)

Check = Callable[[Context], list[Finding]]

# name (for `--check NAME`) -> check, in the order the report lists them.
CHECKS: dict[str, Check] = {
    "secret-key": secret_key,
    "public-url": public_url,
    "sender": sender,
    "mail": mail,
    "webhook": webhook,
    "redis": redis_server,
    "migrations": migrations,
    "files": file_modes,
    "admin-password": admin_password,
    "series": series_files,
    "beat": beat,
    "workers": workers,
    "sending": sending,
    "webhook-events": webhook_events,
    "dns": dns_records,
}

__all__ = [
    "CHECKS", "ERROR", "OK", "WARNING", "Context", "Finding", "Report", "Resolver", "known", "run",
]  # fmt: skip


@dataclass(frozen=True)
class Report:
    findings: list[Finding]

    def count(self, level: str) -> int:
        return sum(1 for f in self.findings if f.level == level)

    @property
    def ok(self) -> bool:
        return self.count(ERROR) == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.count(ERROR),
            "warnings": self.count(WARNING),
            "findings": [f.as_dict() for f in self.findings],
        }


def known(only: Iterable[str]) -> list[str]:
    """The check names asked for; KeyError naming the unknown ones (before anything is read)."""
    wanted = list(only)
    unknown = [name for name in wanted if name not in CHECKS]
    if unknown:
        raise KeyError(f"no check {', '.join(unknown)} (checks: {', '.join(CHECKS)})")
    return wanted


def run(ctx: Context, only: Iterable[str] = ()) -> Report:
    """Run the named checks (default: all) in table order. Unknown names raise KeyError."""
    wanted = known(only)
    findings: list[Finding] = []
    try:
        for name, check in CHECKS.items():
            if wanted and name not in wanted:
                continue
            try:
                findings.extend(check(ctx))
            except Exception as exc:  # a check's own bug or an odd environment: report it
                findings.append(error(name, f"the check failed: {type(exc).__name__}: {exc}"[:300]))
    finally:
        ctx.close()
    return Report(findings)
