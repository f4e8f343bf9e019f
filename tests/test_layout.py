"""The folders are the layers, and imports run one way (docs/architecture.md):
cli -> bench, fuzz, oracles -> traces -> the machine. A module that imports against an arrow
fails here, with the import named."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# folder -> (package it installs as, packages it must never import)
LAYERS = {
    "aero": ("aero", ("aero.cli", "aero.traces", "aero.oracles", "aero.fuzz", "aero.bench")),
    "traces": ("aero.traces", ("aero.cli", "aero.oracles", "aero.fuzz", "aero.bench")),
    "oracles": ("aero.oracles", ("aero.cli", "aero.fuzz", "aero.bench")),
    "fuzz": ("aero.fuzz", ("aero.cli", "aero.bench")),
    "benchmarks": ("aero.bench", ("aero.cli",)),
}
# The top-level namespace re-exports the public API lazily (aero/__init__.py), and the
# command line lives inside aero/ as its own layer.
EXEMPT = {ROOT / "aero" / "__init__.py", ROOT / "aero" / "__main__.py"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (at any depth), as (line, dotted name)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path in EXEMPT or (folder == "aero" and "cli" in path.relative_to(ROOT).parts):
            continue
        for line, mod in imported_modules(path):
            for bad in forbidden:
                if mod == bad or mod.startswith(bad + "."):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    return found


def test_imports_follow_the_arrows() -> None:
    found = [v for folder, (_pkg, bad) in LAYERS.items() for v in violations(folder, bad)]
    assert not found, "\n".join(found)


def test_the_checker_sees_a_wrong_way_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from aero.traces import replay\n    from aero import cli\n")
    mods = [m for _l, m in imported_modules(bad)]
    assert "aero.traces" in mods and "aero.cli" in mods


def test_the_benchmarks_do_not_import_each_other() -> None:
    for a, b in (("mips", "recordreplay"), ("recordreplay", "mips")):
        mods = [m for _l, m in imported_modules(ROOT / "benchmarks" / f"{a}.py")]
        assert not any(m.startswith(f"aero.bench.{b}") for m in mods), (a, b)


def test_the_public_api() -> None:
    import aero

    for name in aero.__all__:
        assert getattr(aero, name) is not None, name
    assert callable(aero.record) and callable(aero.replay) and callable(aero.check)
    assert (ROOT / "aero" / "py.typed").exists()
