"""Private files: created 0600 in folders created 0700 whatever the umask; an old file replaced,
never reopened; loose files of ours tightened; the generated key file is private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from paths import file_mode

from newsletter.core.config import load_settings
from newsletter.core.private_files import (
    create_private,
    open_to_others,
    private_folder,
    tighten,
    touch_private,
    write_private,
)


@pytest.mark.usefixtures("umask_022")
def test_new_files_are_0600_in_new_folders_0700(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "data.csv"
    os.close(create_private(path))
    assert file_mode(path) == 0o600
    assert file_mode(tmp_path / "a") == file_mode(tmp_path / "a" / "b") == 0o700
    with pytest.raises(FileExistsError):  # O_EXCL: never opens a file someone put there
        create_private(path)
    touch_private(path)  # already there: left as it is
    assert file_mode(path) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_existing_folders_are_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    private_folder(shared / "mine")
    assert file_mode(shared) == 0o755 and file_mode(shared / "mine") == 0o700


def test_an_odd_umask_still_gives_0600(tmp_path: Path) -> None:
    old = os.umask(0o277)  # would leave the owner read-only
    try:
        touch_private(tmp_path / "k")
    finally:
        os.umask(old)
    assert file_mode(tmp_path / "k") == 0o600


@pytest.mark.usefixtures("umask_022")
def test_write_private_replaces_a_loose_file(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("old")
    path.chmod(0o644)
    with write_private(path, "w", encoding="utf-8") as out:
        out.write("new")
    assert path.read_text() == "new" and file_mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]  # no partial left


@pytest.mark.usefixtures("umask_022")
def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError), write_private(path) as out:
        out.write("half")
        raise RuntimeError("stopped")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["export.csv"]


def test_tighten_and_open_to_others(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_text("x")
    path.chmod(0o644)
    assert open_to_others(path)
    assert tighten(path) and file_mode(path) == 0o600
    assert not open_to_others(path) and not tighten(path)
    assert not tighten(tmp_path / "missing") and not open_to_others(tmp_path / "missing")


@pytest.mark.usefixtures("umask_022")
def test_the_generated_key_file_is_private(tmp_path: Path) -> None:
    var = tmp_path / "new" / "var"
    settings = load_settings(var_dir=str(var), secret_key=None)
    key = settings.secret
    path = var / "secret_key"
    assert path.read_text().strip() == key and len(key) >= 32
    assert file_mode(path) == 0o600
    assert file_mode(var) == file_mode(var.parent) == 0o700
    assert [p.name for p in var.iterdir()] == ["secret_key"]  # no partial left
    # another process (a new settings object) reads the same key
    assert load_settings(var_dir=str(var), secret_key=None).secret == key


@pytest.mark.usefixtures("umask_022")
def test_a_loose_key_file_is_tightened_when_read(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text("k" * 48)
    (var / "secret_key").chmod(0o644)
    assert load_settings(var_dir=str(var), secret_key=None).secret == "k" * 48
    assert file_mode(var / "secret_key") == 0o600
