"""Every command in README.md and docs/guide.md runs as written, from the clone's root.

The convention of those two pages (stated in docs/guide.md):

* commands are the lines that start with ``$ `` inside fenced blocks (```` ``` ```` or
  ```` ```console ````); the lines without it are the output shown;
* a command exits 0 unless it ends with a ``# exits N`` comment;
* ``# not run by tests: REASON`` marks an interactive or long command, which this test skips;
* ``# needs TOOL`` marks a command that needs a program besides aero (skipped without it).

The commands run in order in a temporary copy of the pages and ``guests/``, with
``AERO_TRACE_DIR`` in a temporary directory: a plain ``aero ...`` line (no pipe, redirection
or other shell syntax) through ``aero.cli.main`` in this process, split as the shell splits
it (to keep the test fast), anything else with bash and the ``aero`` of this interpreter
first on PATH, with a timeout.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs/guide.md")
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", flags=re.S | re.M)
TIMEOUT = 60


@dataclass
class Command:
    page: str
    line: str  # the command as written, without "$ "
    expect: int  # exit code
    skip: str | None  # why it is not run, or None
    needs: str | None  # a program it needs besides aero


def parse_command(page: str, text: str) -> Command:
    """One ``$ `` line of a page, with its markers."""
    skip = re.search(r"#\s*not run by tests:\s*(.+)$", text)
    exits = re.search(r"#\s*exits (\d+)\b", text)
    needs = re.search(r"#\s*needs ([\w.-]+)", text)
    return Command(page, text, int(exits.group(1)) if exits else 0,
                   skip.group(1).strip() if skip else None, needs.group(1) if needs else None)


def doc_commands(root: Path = ROOT) -> list[Command]:
    """The commands of README.md then docs/guide.md, in order."""
    out = []
    for page in PAGES:
        for lang, body in FENCE.findall((root / page).read_text()):
            if lang not in ("", "console"):
                continue
            out += [parse_command(page, line[2:]) for line in body.splitlines()
                    if line.startswith("$ ")]
    return out


def test_the_convention_is_parsed() -> None:
    c = parse_command("x", "aero diff a b   # exits 1: they differ")
    assert (c.expect, c.skip, c.needs) == (1, None, None)
    c = parse_command("x", "aero record demo --interactive   # not run by tests: interactive")
    assert c.skip == "interactive" and c.expect == 0
    assert parse_command("x", "aero info --json | jq .digest   # needs jq").needs == "jq"
    cmds = doc_commands()
    lines = [c.line.split("#")[0].strip() for c in cmds]
    assert lines[:1] == ["python3 -m pip install -e '.[test]'"]
    assert "aero demo" in lines and "aero diff a.aerotrace b.aerotrace" in lines
    assert {c.page for c in cmds} == set(PAGES)
    assert sum(c.skip is None for c in cmds) >= 25
    # Every long or interactive command is marked.
    for c in cmds:
        if "--interactive" in c.line or re.search(r"aero bench\b|--examples \d{5}", c.line):
            assert c.skip, c.line


SHELL_SYNTAX = re.compile(r"[|<>;&$`()*?~]")


def _in_process(line: str) -> int | None:
    """Exit code of a plain ``aero ...`` line run through aero.cli.main, or None when the
    line needs a shell."""
    words = line.split("#")[0].strip()
    if not words.startswith("aero ") or SHELL_SYNTAX.search(words):
        return None
    from aero import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(shlex.split(words)[1:])
    assert "Traceback" not in err.getvalue(), (line, err.getvalue())
    return code


def test_the_documented_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    for page in PAGES:
        (clone / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / page, clone / page)
    shutil.copytree(ROOT / "guests", clone / "guests")
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    env = {**os.environ, "AERO_TRACE_DIR": str(tmp_path / "traces"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "AERO_PROGRESS_INTERVAL": "3600"}
    for key in ("AERO_TRACE_DIR", "AERO_PROGRESS_INTERVAL"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(clone)
    ran = 0
    for c in doc_commands():
        if c.skip or (c.needs and shutil.which(c.needs) is None):
            continue
        code = _in_process(c.line)
        if code is not None:
            assert code == c.expect, (c.page, c.line, code)
            ran += 1
            continue
        p = subprocess.run([bash, "-c", c.line], cwd=clone, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        assert p.returncode == c.expect, (c.page, c.line, p.returncode, p.stderr[-2000:])
        assert "Traceback" not in p.stderr, (c.line, p.stderr[-2000:])
        ran += 1
    assert ran >= 25
