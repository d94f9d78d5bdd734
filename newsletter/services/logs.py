"""Log output: a readable line (default) or one JSON object per line, never personal data.

NEWSLETTER_LOG_FORMAT=json prints one object per line: time (UTC, ISO 8601), level, logger,
message, and the ids of the work at hand when there is one (`tick_id`, `chunk_id`,
`series_id`, `part`, `deliveries`, and any `delivery_id` a record carries), set by the task
wrappers through `context`. The default text format prints the same ids after the message.

Every line goes through `Scrub` first: email addresses become `<address>` (the SMTP backend's
`scrub`), link tokens (`/confirm/…`, `/preferences/…`, `/unsubscribe/…`, and a bare signed token)
become `…`, and the access log's client address becomes `-` (an IP address is personal data; a
proxy in front may keep its own log). Names are never logged by the code; the log test checks a
whole run for them.
`configure` installs one handler on the root logger (stderr), idempotently; Celery's own
logging set-up is replaced by it (tasks.py), and uvicorn's loggers are routed through it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from newsletter.mail.backends.smtp import scrub as scrub_addresses

FIELDS = ("tick_id", "chunk_id", "series_id", "part", "deliveries", "delivery_id", "task")
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "newsletter_log_context", default=None
)

# A link's token in a path, and a bare signed token: `<public id>.<22-char MAC>` (compact form)
# or itsdangerous's `<payload>.<timestamp>.<27-char signature>`.
_LINK = re.compile(r"(/(?:confirm|preferences|unsubscribe)/)[^/?#\s\"'<>]+")
_TOKEN = re.compile(r"(?<![\w-])[\w-]{4,}\.(?:[\w-]{4,}\.[\w-]{27}|[\w-]{22})(?![\w-])", re.ASCII)


def scrub(text: str) -> str:
    """`text` without addresses and link tokens."""
    text = scrub_addresses(text)
    text = _LINK.sub(r"\1…", text)
    return _TOKEN.sub("…", text)


@contextlib.contextmanager
def context(**ids: Any) -> Iterator[None]:
    """Ids added to every record logged inside the block (in this thread or task)."""
    merged = {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class Scrub(logging.Filter):
    """Formats the message once, scrubbed, and adds the context's ids to the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and record.args:
            record.args = ("-", *record.args[1:])  # (client address, method, path, version, status)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.exc_info = None  # exc_text is what is printed, scrubbed
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_ids(record),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-01 14:01:00,123 INFO newsletter.tasks: message [chunk_id=… series_id=3]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _ids(record)
        if ids:
            extra = " ".join(f"{k}={v}" for k, v in ids.items())
            head, sep, tail = line.partition("\n")
            line = f"{head} [{extra}]{sep}{tail}"
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


class NewsletterHandler(logging.StreamHandler[IO[str]]):
    """The root handler `configure` installs (found again by its type). Without a stream of its
    own it writes to whatever sys.stderr is at the time (a test's capture swaps it)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._follow = stream is None
        super().__init__(stream or sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr if self._follow else self._stream

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        self._stream = value


def configure(
    fmt: str = "text", stream: IO[str] | None = None, level: int = logging.INFO
) -> logging.Handler:
    """Route every log record through one scrubbing handler in `fmt` (json or text).

    Idempotent: a second call replaces the handler an earlier one installed. uvicorn's loggers
    lose their own handlers and propagate here, so the access log is in the same format.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, NewsletterHandler)]:
        root.removeHandler(old)
    handler = NewsletterHandler(stream)
    handler.addFilter(Scrub())
    handler.setFormatter(FORMATTERS.get(fmt, TextFormatter)())
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
        logger.propagate = True
    return handler
