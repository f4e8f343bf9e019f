"""The trace corpus (tests/corpus/): every golden and regression trace replays bit-exactly, from the
images packed inside it, and passes the integrity check."""

from __future__ import annotations

from pathlib import Path

import pytest
from aero.traces.container import open_trace
from aero.traces.replay import Replayer, load_contents

from aero.cli.trace import trace_info

CORPUS = sorted((Path(__file__).resolve().parent / "corpus").glob("*.aerotrace"))
# A Linux session replays a whole kernel boot (about 3e9 ticks): a slow test.
SLOW = ("linux-",)


def test_the_corpus_is_not_empty() -> None:
    assert CORPUS, "tests/corpus/ holds no traces"


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.slow) if p.name.startswith(SLOW) else p for p in CORPUS],
    ids=[p.name for p in CORPUS])
def test_corpus_trace_replays(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "empty"))  # packed: needs no store
    info = trace_info(path)
    assert info["complete"] and info["integrity"] == "ok" and info["packed"]
    c = load_contents(open_trace(path))
    r = Replayer(c).run()
    assert not r.diverged, r.divergence
    assert r.checkpoints_verified == len(c.cp_ticks)
    assert r.ticks == c.end_tick
