"""Paths and small helpers shared by tests (importable by name: conftest modules are not)."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"  # the team's shared folder, beside a checkout (may be absent)
CONTRACTS = ROOT / "tests" / "contracts"  # copies of SHARED/contracts, so a clean clone tests alone
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots and reports (git-ignored)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TESTS = ROOT / "tests"  # the tests folder, wherever a test module sits in it


def file_mode(path: Path) -> int:
    """The permission bits of `path` (0o600, 0o700, …)."""
    return path.stat().st_mode & 0o777
