"""The campaign executor: results independent of workers, resume, lost workers, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aero.fuzz.cpu_campaign import cpu_chunk, merge
from aero.fuzz.executor import (
    NOT_EVALUATED,
    Chunk,
    ExecutorError,
    ExecutorSpec,
    chunk_seed,
    plan,
    run,
)

ROOT = Path(__file__).resolve().parent.parent
CPU = {"mode": "pm32", "classes": ["alu"], "against": ["unicorn"]}
CALLS: list[int] = []


def children() -> set[int]:
    """Live descendants of this process (Linux /proc), zombies excluded."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def toy_chunk(chunk: Chunk, params: dict) -> dict:
    """A cheap deterministic job; dies (like a lost worker) on chunk ``params['die']``."""
    CALLS.append(chunk.index)
    if chunk.index == params.get("die"):
        os._exit(3)
    return {"sum": sum((chunk.seed >> (i % 32)) & 0xFF for i in range(chunk.count)),
            "count": chunk.count}


def cpu_report(spec: ExecutorSpec, **kw: object) -> dict:
    return merge(run("fuzz cpu", cpu_chunk, CPU, 30, 14, spec, chunk_size=10, **kw),
                 ["unicorn"])


def test_plan_is_a_function_of_seed_and_examples() -> None:
    chunks = plan(55, 7, 20)
    assert [(c.index, c.start, c.count) for c in chunks] == [(0, 0, 20), (1, 20, 20),
                                                              (2, 40, 15)]
    assert [c.seed for c in chunks] == [chunk_seed(7, i) for i in range(3)]
    assert len({c.seed for c in chunks}) == 3 and plan(55, 8, 20)[0].seed != chunks[0].seed


def test_cpu_campaign_same_on_one_two_workers_and_a_local_cluster() -> None:
    before = children()
    one = cpu_report(ExecutorSpec(jobs=1))
    assert one["examples"] == 30 and not one["not_evaluated"]
    assert one["references"]["unicorn"]["divergences"], "the seed finds explained cases"
    two = cpu_report(ExecutorSpec(jobs=2))
    cluster = cpu_report(ExecutorSpec(jobs=2, dask="local"))
    assert json.dumps(two, sort_keys=True) == json.dumps(one, sort_keys=True)
    assert json.dumps(cluster, sort_keys=True) == json.dumps(one, sort_keys=True)
    assert children() <= before


def test_resume_evaluates_only_missing_chunks(tmp_path: Path) -> None:
    path = tmp_path / "toy.jsonl"
    params = {"die": None}
    full = run("toy", toy_chunk, params, 50, 5, ExecutorSpec(), chunk_size=10, results=path)
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["kind"] == "header"
    # Interrupted after two chunks, the third line torn in the middle.
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:17])
    CALLS.clear()
    again = run("toy", toy_chunk, params, 50, 5, ExecutorSpec(), chunk_size=10,
                results=path, resume=True)
    assert sorted(CALLS) == [2, 3, 4]
    assert [o.result for o in again] == [o.result for o in full]
    with pytest.raises(ExecutorError, match="another campaign"):
        run("toy", toy_chunk, params, 50, 6, ExecutorSpec(), chunk_size=10, results=path,
            resume=True)


def test_lost_worker_is_not_evaluated_locally() -> None:
    before = children()
    out = run("toy", toy_chunk, {"die": 1}, 40, 2, ExecutorSpec(jobs=2), chunk_size=10)
    assert [o.status for o in out] == ["ok", NOT_EVALUATED, "ok", "ok"]
    assert "worker process died" in (out[1].error or "")
    report = merge_toy(out)
    assert report["evaluated"] == 30
    assert children() <= before


def merge_toy(out: list) -> dict:
    return {"evaluated": sum(o.result["count"] for o in out if o.status == "ok")}


def test_lost_worker_is_not_evaluated_on_a_cluster() -> None:
    import cloudpickle
    import dask

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    before = children()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        out = run("toy", toy_chunk, {"die": 2}, 30, 2, ExecutorSpec(jobs=2, dask="local"),
                  chunk_size=10)
    assert [o.status for o in out] == ["ok", "ok", NOT_EVALUATED]
    assert "worker lost" in (out[2].error or "")
    assert children() <= before


def test_unreachable_scheduler_is_a_one_line_error() -> None:
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        run("toy", toy_chunk, {}, 10, 0, ExecutorSpec(dask="tcp://127.0.0.1:9"))
    proc = subprocess.run(
        [sys.executable, "-m", "aero", "fuzz", "cpu", "--examples", "5", "--mode", "real",
         "--dask", "tcp://127.0.0.1:9", "--no-progress"], capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot reach the Dask scheduler" in proc.stderr


SUITE = next((p / "shared" / "conformance" / "sst80286-real" for p in ROOT.parents
              if (p / "shared" / "conformance" / "sst80286-real").is_dir()), ROOT / "missing")


@pytest.mark.skipif(not SUITE.is_dir(), reason="the SingleStepTests suite is not available")
def test_conformance_through_the_executor_equals_a_direct_run() -> None:
    from aero.fuzz.sst import run_directory
    from aero.fuzz.sst_campaign import files, sst_chunk
    from aero.fuzz.sst_campaign import merge as merge_sst

    only = {"00", "01", "F7.6"}
    keys = files(SUITE, only)
    out = run("conformance", sst_chunk, {"directory": str(SUITE), "keys": keys}, len(keys),
              0, ExecutorSpec(jobs=2), chunk_size=1)
    merged = merge_sst(out, str(SUITE))
    assert merged.pop("not_evaluated") == []
    assert json.dumps(merged, sort_keys=True) == json.dumps(run_directory(SUITE, only),
                                                            sort_keys=True)
