"""Fuzzing of device-input schedules (aero.fuzz.inputs): the bundled `stats` guest's
division by zero is found from a fixed seed and minimised; the corpus replays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aero.fuzz.executor import ExecutorSpec, run
from aero.fuzz.inputs import inputs_chunk, merge, minimise_and_save

from aero.events import Kind

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "corpus" / "inputs").glob("*.json"))
PARAMS = {"guest": "stats", "oracle": "output-contains:UNEXPECTED",
          "kinds": ["serial", "key", "nmi"]}


def test_the_division_by_zero_is_found_and_minimised(tmp_path: Path) -> None:
    out = run("fuzz inputs", inputs_chunk, PARAMS, 150, 1, ExecutorSpec(), chunk_size=25)
    report = merge(out)
    assert report["failing_chunks"] == [3, 5] and not report["not_evaluated"]
    failing = report["failing"]
    saved = minimise_and_save("stats", PARAMS["oracle"], failing, tmp_path, "case")
    # One line terminator before any number: the mean divides by a count of zero.
    assert [(e["kind"], e["b"]) for e in saved["events"]] == [(int(Kind.SERIAL_RX), 0x0D)]
    assert saved["still_fails"] and saved["replays_cleanly"]
    assert (tmp_path / "case.aerotrace").exists() and (tmp_path / "case.json").exists()


def test_no_failure_no_schedule() -> None:
    params = dict(PARAMS, oracle="output-contains:NEVER PRINTED")
    report = merge(run("fuzz inputs", inputs_chunk, params, 20, 1, ExecutorSpec(),
                       chunk_size=10))
    assert report["failing"] is None and report["examples"] == 20


def test_corpus_exists() -> None:
    assert CORPUS, "tests/corpus/inputs/ holds the minimised failing schedules"


@pytest.mark.parametrize("meta", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_replays_and_still_fails(meta: Path) -> None:
    from aero.oracles import failure_predicate
    from aero.traces.diff import open_contents

    import aero

    case = json.loads(meta.read_text())
    trace = meta.with_suffix(".aerotrace")
    rep = aero.replay(trace)
    assert not rep.diverged
    assert failure_predicate(case["oracle"])(open_contents(trace))


def test_cli_rejects_an_unknown_oracle() -> None:
    proc = subprocess.run([sys.executable, "-m", "aero", "fuzz", "inputs", "stats", "--oracle",
                           "no-such-oracle", "--jobs", "1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no-such-oracle" in proc.stderr
