"""mypy on cachesvc as it is installed, with the [tool.mypy] configuration of pyproject.toml.

The folders policies/ and kernels/ are the packages cachesvc.policies and cachesvc.kernels (the package-dir mapping
in pyproject.toml). mypy names a module after its folder and cannot follow setuptools' editable import hook, so plain
``mypy`` would check them as top-level ``policies``/``kernels`` and find no ``cachesvc.policies``. This names every
source file by its installed module, from that same mapping, and runs mypy's build on them. Extra arguments go to
mypy (``python3 scripts/typecheck.py --no-incremental``). Exit status as mypy's: 0 clean, 1 type errors, 2 a crash
or a blocking error.
"""

from __future__ import annotations

import os
import sys
import time
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[str, str]:
    """Folder -> installed package, e.g. ``policies`` -> ``cachesvc.policies``."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        mapping: dict[str, str] = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {folder: package for package, folder in mapping.items()}


def installed_name(module: str, folders: dict[str, str]) -> str:
    top, dot, rest = module.partition(".")
    return folders[top] + dot + rest if top in folders else module


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    os.chdir(ROOT)
    folders = package_dirs()
    fscache = FileSystemCache()
    sources, options = process_options([*argv, *folders], fscache=fscache)
    sources = [BuildSource(s.path, installed_name(s.module, folders), s.text, s.base_dir) for s in sources]
    messages: list[str] = []

    def report(filename: str | None, new: list[str], serious: bool) -> None:
        messages.extend(new)
        for line in new:
            print(line, file=sys.stderr if serious else sys.stdout)

    try:
        build.build(sources, options, flush_errors=report, fscache=fscache)
        blocked = False
    except CompileError:  # already reported through `report`
        blocked = True
    errors = [m for m in messages if ": error:" in m]
    files = len({m.split(":", 1)[0] for m in errors})
    took = time.perf_counter() - started
    if errors:
        print(f"mypy: {len(errors)} errors in {files} files ({len(sources)} source files, {took:.1f} s)")
    else:
        print(f"mypy: no issues in {len(sources)} source files ({took:.1f} s)")
    return 2 if blocked else 1 if errors else 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as mypy does: skip freeing the build's objects (seconds)
