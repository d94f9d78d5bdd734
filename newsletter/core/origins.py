"""Web origins (`scheme://host[:port]`): the practice's own websites, allowed to post and frame the signup form."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A host name (labels of letters, digits and hyphens), an IPv4 address or a bracketed IPv6 one.
_HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])$"
)
DEFAULT_PORTS = {"http": 80, "https": 443}
MOST = 20  # origins in one list: a practice has a site or two, not a directory


def origin(value: str) -> str:
    """The origin `value` names, in the form a browser sends it (lowercase, no default port, no
    trailing slash); ValueError saying what is wrong with anything else (a path, a query, …)."""
    text = value.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise ValueError(f"{text!r} is not a web address: write it like https://www.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            f"{text!r} has more than the site's address: keep only the part like https://www.example.com"
        )
    host = (parts.hostname or "").lower()
    if not _HOST.match(host if ":" not in host else f"[{host}]"):
        raise ValueError(f"{text!r} does not name a host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a port that is not a number from 1 to 65535") from None
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    return f"{scheme}://{shown}"


def origins(text: str) -> tuple[str, ...]:
    """The origins of a list (one a line, or separated by spaces or commas), each checked and
    normalised, duplicates dropped; ValueError naming the first bad one."""
    found: list[str] = []
    for word in re.split(r"[\s,]+", text):
        if word and (one := origin(word)) not in found:
            found.append(one)
    if len(found) > MOST:
        raise ValueError(f"list at most {MOST} websites")
    return tuple(found)


def listed(text: str | None) -> tuple[str, ...]:
    """The origins of a saved list (already checked when saved; anything unreadable is left out)."""
    result: list[str] = []
    for word in re.split(r"[\s,]+", text or ""):
        try:
            result.append(origin(word))
        except ValueError:
            continue
    return tuple(result)


def of_url(url: str) -> str | None:
    """The origin of a full URL (a Referer), or None when it has none."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    try:
        return origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        return None
