"""The documentation's examples run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


def test_the_api_page_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _python_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) == 1
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path / "traces"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "docs/api.md", "exec"), {"__name__": "__docs__"})  # noqa: S102
    lines = out.getvalue().splitlines()
    stop, status, ticks = lines[0].split()
    assert stop == "exit" and int(status) == (3 << 1) | 1 and int(ticks) > 0
    assert lines[1] == "True []"
    assert not (tmp_path / "traces").exists()  # an explicit output path: nothing else written
