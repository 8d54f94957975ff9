"""The import rules of docs/architecture.md hold: each part imports only the parts its row of the table names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"cachesvc": ROOT / "cachesvc", "cachesvc.policies": ROOT / "policies", "cachesvc.kernels": ROOT / "kernels",
           "cachesvc.loadtests": ROOT / "loadtests"}
THIRD_PARTY_RULED = ("aiohttp",)  # third-party packages the table rules on


def allowed_imports() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- imports:begin -->")[1].split("<!-- imports:end -->")[0]
    rules: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        rules[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return rules


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            if package == "cachesvc" and parts and parts[0] in ("policies", "kernels", "loadtests"):
                continue
            found[".".join([package, *parts])] = path
    return found


def part_of(module: str, parts: set[str]) -> str | None:
    """The longest table entry that is the module or a package above it."""
    candidates = [p for p in parts if module == p or module.startswith(p + ".")]
    return max(candidates, key=len) if candidates else None


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """Absolute names imported anywhere in the module (functions included), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            type_only.update(id(n) for child in node.body for n in ast.walk(child))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            elif node.module:
                names.append((node.module, node.lineno))
    return names


def test_the_table_covers_every_module() -> None:
    rules = allowed_imports()
    assert "cachesvc.server" in rules and "cachesvc.kernels" in rules
    orphans = [m for m in modules() if part_of(m, set(rules)) is None]
    assert not orphans, f"modules in no row of docs/architecture.md: {orphans}"


def test_every_import_is_allowed() -> None:
    rules = allowed_imports()
    parts = set(rules) | set(THIRD_PARTY_RULED)
    violations = []
    for module, path in modules().items():
        own = part_of(module, set(rules))
        assert own is not None
        for name, line in imports_of(module, path):
            if not name.startswith("cachesvc") and name.split(".")[0] not in THIRD_PARTY_RULED:
                continue
            target = part_of(name, parts)
            if target is None and name == "cachesvc":
                target = "cachesvc"
            if target != own and target not in rules[own]:
                violations.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {name}")
    assert not violations, "\n".join(violations)


def test_the_cache_knows_no_http() -> None:
    for module, path in modules().items():
        if module.startswith("cachesvc.cache"):
            assert all(name != "cachesvc.openai.http" for name, _ in imports_of(module, path)), module


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rules could fail: a kernel importing the server would be reported."""
    path = tmp_path / "k.py"
    path.write_text("from cachesvc.server.app import create_app\nif TYPE_CHECKING:\n    import aiohttp\n")
    names = [name for name, _ in imports_of("cachesvc.kernels.k", path)]
    assert names == ["cachesvc.server.app"]
    rules = allowed_imports()
    assert part_of("cachesvc.server.app", set(rules)) not in rules["cachesvc.kernels"]
