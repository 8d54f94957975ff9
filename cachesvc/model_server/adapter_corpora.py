"""Offline text corpora for six distinct domains, read from files every cachesvc install has on disk.

They exist to train and evaluate small LoRA adapters without a network: Python standard-library sources (code),
licence texts shipped with cachesvc's requirements and the OS (legal), the Python reference's help topics (docs),
C and C++ headers and sources shipped with CPython and cachesvc's requirements (cpp), the project descriptions those
requirements publish (readme, mostly Markdown prose) and the CMake build scripts they ship (build).
Only cachesvc's own pinned requirements are read, so a corpus does not change with whatever else is installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

DOMAINS = ("code", "legal", "docs", "cpp", "readme", "build")

MIN_CHARS = 400
MAX_CHARS = 60_000
DEFAULT_LIMIT = 200
HELDOUT_FRACTION = 0.2
CHUNK_CHARS = 4_000  # long files (package descriptions, generated build scripts) are cut into texts of about this size
MAX_CPP_FILES = 1_500  # the requirements ship ~10,000 headers; a fixed sample of them is plenty and reads fast
CPP_SUFFIXES = (".h", ".hpp", ".cuh", ".c", ".cc", ".cpp")


def domain_texts(domain: str, *, limit: int | None = DEFAULT_LIMIT) -> list[str]:
    """De-duplicated texts of one domain in a fixed pseudo-random order (by content hash), at most ``limit``."""
    try:
        source = _SOURCES[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}") from None
    texts = _dedupe(text for text in source() if MIN_CHARS <= len(text) <= MAX_CHARS)
    texts.sort(key=_digest)
    return texts if limit is None else texts[:limit]


def split(texts: list[str], *, heldout_fraction: float = HELDOUT_FRACTION) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: a disjoint split decided by each text's content hash, so it never depends on order."""
    ranked = sorted(set(texts), key=lambda text: _digest("heldout:" + text))
    n_heldout = max(1, round(len(ranked) * heldout_fraction)) if len(ranked) > 1 else 0
    heldout = set(ranked[:n_heldout])
    return [t for t in texts if t not in heldout], [t for t in ranked[:n_heldout]]


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _dedupe(texts: Iterable[str]) -> list[str]:
    """First occurrence of each text, comparing texts with their whitespace normalised."""
    seen: set[str] = set()
    out = []
    for text in texts:
        key = _digest(" ".join(text.split()))
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > 4 * MAX_CHARS:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _code_texts() -> list[str]:
    """Standard-library modules, without third-party packages and without the stdlib's own test suites."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    paths = []
    for folder, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in skip]  # prune: site-packages alone holds far more files than stdlib
        paths += [Path(folder, name) for name in files if name.endswith(".py")]
    return [text for text in map(_read, sorted(paths)) if text]


def _licence_files() -> list[Path]:
    """The OS's common licences and those shipped by the distributions cachesvc itself requires: a corpus that does
    not change with whatever else happens to be installed (test tools, other projects)."""
    files: set[Path] = set()
    for dist in _required_distributions():
        for name in dist.files or ():
            parts = name.parts
            if parts and parts[0].endswith(".dist-info") and (
                    parts[-1].upper().startswith(("LICENSE", "LICENCE", "COPYING")) or "licenses" in parts[1:-1]):
                files.add(Path(str(dist.locate_file(name))))
    common = Path("/usr/share/common-licenses")
    if common.is_dir():
        files.update(common.iterdir())
    return sorted(path for path in files if path.is_file())


def _distribution_files(suffixes: tuple[str, ...]) -> list[tuple[str, Path]]:
    """``(name inside its distribution, path)`` of the requirements' files whose names end in ``suffixes``."""
    found = []
    for dist in _required_distributions():
        project = dist.metadata["Name"]  # parsed anew on every access: read it once per distribution
        for name in dist.files or ():
            if name.name.lower().endswith(suffixes):
                found.append((f"{project}/{name}", Path(str(dist.locate_file(name)))))
    return sorted(found)


def _chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """``text`` cut at blank lines into pieces of about ``size`` characters (a longer paragraph stays whole)."""
    pieces, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        if current and len(current) + len(paragraph) > size:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return [*pieces, current] if current.strip() else pieces


def _required_distributions() -> list[importlib.metadata.Distribution]:
    """cachesvc's own runtime requirements (no extras) that are installed."""
    found = []
    for requirement in importlib.metadata.requires("cachesvc") or ():
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0]
        try:
            found.append(importlib.metadata.distribution(name))
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _legal_texts() -> list[str]:
    """Licence texts: those of cachesvc's requirements and ``/usr/share/common-licenses``."""
    return [text for text in map(_read, _licence_files()) if text]


def _docs_texts() -> list[str]:
    """The Python language reference's help topics (what ``help("with")`` prints), shipped with every CPython."""
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def _cpp_texts() -> list[str]:
    """C and C++ headers and sources: CPython's own headers and a fixed sample (by name) of the requirements'."""
    include = Path(sysconfig.get_paths()["include"])
    own = sorted(include.rglob("*.h")) if include.is_dir() else []
    shipped = sorted(_distribution_files(CPP_SUFFIXES), key=lambda item: _digest(item[0]))[:MAX_CPP_FILES]
    return [text for text in map(_read, [*own, *(path for _, path in shipped)]) if text]


def _readme_texts() -> list[str]:
    """The long descriptions (PyPI project pages, mostly Markdown) of cachesvc's requirements, cut into sections."""
    texts = []
    for dist in sorted(_required_distributions(), key=lambda d: d.metadata["Name"].lower()):
        metadata = dist.read_text("METADATA") or ""
        texts += _chunks(metadata.partition("\n\n")[2])  # the headers end at the first blank line; the body follows
    return texts


def _build_texts() -> list[str]:
    """CMake scripts shipped with cachesvc's requirements (package configs and exported targets), cut into pieces."""
    return [piece for _, path in _distribution_files((".cmake",)) for piece in _chunks(_read(path) or "")]


_SOURCES: dict[str, Callable[[], list[str]]] = {
    "code": _code_texts, "legal": _legal_texts, "docs": _docs_texts, "cpp": _cpp_texts, "readme": _readme_texts,
    "build": _build_texts,
}
