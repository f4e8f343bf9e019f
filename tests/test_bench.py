"""The benchmark harness's arithmetic: medians, spread, paired ratios, saved runs and
comparisons (no timing is asserted: figures live in `aero bench`, not in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aero.bench import history, stats


def test_sample_median_and_spread() -> None:
    s = stats.sample([2.0, 1.0, 4.0])
    assert (s.median, s.minimum, s.maximum, s.n) == (2.0, 1.0, 4.0, 3)
    assert s.spread == pytest.approx(1.5)
    assert not s.trusted
    assert stats.sample([1.00, 1.05, 1.02]).trusted
    assert not stats.sample([1.0]).trusted  # one timing says nothing about noise
    with pytest.raises(ValueError):
        stats.sample([])
    with pytest.raises(ValueError):
        stats.sample([1.0, 0.0])


def test_ratio_is_the_median_of_pairs_not_of_medians() -> None:
    # Pairs measured back to back: a slow moment slows both sides of its pair.
    a = [10.0, 20.0, 11.0]
    b = [5.0, 10.0, 5.5]
    r = stats.ratio(a, b)
    assert r.median == pytest.approx(2.0) and r.spread == pytest.approx(0.0) and r.trusted
    # The ratio of the medians would be the same here; with a skewed pair it is not.
    r2 = stats.ratio([10.0, 10.0, 30.0], [5.0, 5.0, 5.0])
    assert r2.median == pytest.approx(2.0) and not r2.trusted
    with pytest.raises(ValueError):
        stats.ratio([1.0], [1.0, 2.0])


def _report(alu_mips: float, overhead: float) -> dict:
    return {"workloads": [{"name": "alu", "mips": alu_mips, "qemu_mips": 4000.0,
                           "aero_qemu_ratio": alu_mips / 4000.0}],
            "record_replay": {"cpu": {"record_overhead_percent": overhead,
                                      "replay_speed_percent_of_record": 99.0}}}


def test_save_load_and_compare(tmp_path: Path) -> None:
    path = history.save(_report(100.0, 3.0), tmp_path / "run.json")
    doc = history.load(path)
    assert doc["format"] == history.FORMAT and doc["report"]["workloads"][0]["mips"] == 100.0
    assert doc["machine"]["cores"] >= 1 and "core_stamp" in doc["machine"]
    rows = {r.name: r for r in history.compare(doc["report"], _report(150.0, 4.5))}
    assert rows["alu.mips"].ratio == pytest.approx(1.5) and rows["alu.mips"].better is True
    # Overhead is lower-is-better: 3.0 -> 4.5 % is a slowdown.
    over = rows["record_replay.record_overhead_percent"]
    assert over.ratio == pytest.approx(1.5) and over.better is False
    assert rows["record_replay.replay_speed_percent_of_record"].better is None


def test_a_bare_json_report_loads_and_garbage_does_not(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(_report(1.0, 1.0)))
    assert history.load(bare)["report"]["workloads"][0]["mips"] == 1.0
    bad = tmp_path / "bad.json"
    bad.write_text('{"something": 1}')
    with pytest.raises(ValueError):
        history.load(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError):
        history.load(bad)


def test_compare_needs_a_readable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    from aero.cli import main

    assert main(["bench", "--compare", str(tmp_path / "missing.json"), "--quick"]) == 2
    assert "not a saved benchmark run" in capsys.readouterr().err
