"""Campaign throughput: examples per second of ``aero fuzz cpu`` against Unicorn and QEMU,
with 1 and 2 workers, as local processes and on a Dask LocalCluster.

``python -m aero.bench.campaigns [--examples N] [--references unicorn,qemu] [--json]``

Each configuration runs the same campaign (mode ``pm32``, the ``alu`` and ``data``
classes, seed 1, chunks of 10): the results are identical whatever the workers (checked
here too), only the time differs. The time includes starting the workers (process pool or
cluster) and, for QEMU, one QEMU per worker, so short campaigns understate what more
workers give. Wall-clock figures depend on the machine's load: the report gives the load
average at the start and at the end of each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from aero.fuzz.cpu_campaign import cpu_chunk, merge
from aero.fuzz.executor import ExecutorSpec, run

__all__ = ["measure", "main"]

CONFIGS = (("local", 1), ("local", 2), ("cluster", 1), ("cluster", 2))


def measure(reference: str, where: str, workers: int, examples: int, seed: int = 1) -> dict:
    """One configuration: elapsed seconds, examples per second, the merged report's digest."""
    spec = ExecutorSpec(jobs=workers, dask="local" if where == "cluster" else None)
    params = {"mode": "pm32", "classes": ["alu", "data"], "against": [reference]}
    load0 = os.getloadavg()[0]
    t = time.monotonic()
    report = merge(run("bench", cpu_chunk, params, examples, seed, spec, chunk_size=10),
                   [reference])
    elapsed = time.monotonic() - t
    return {"reference": reference, "where": where, "workers": workers,
            "examples": report["examples"], "seconds": round(elapsed, 2),
            "examples_per_second": round(report["examples"] / elapsed, 2),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "result": json.dumps(report, sort_keys=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aero.bench.campaigns")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--references", default="unicorn,qemu")
    ap.add_argument("--configs", default="local:1,local:2,cluster:1,cluster:2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for ref in [r for r in args.references.split(",") if r]:
        for cfg in args.configs.split(","):
            where, n = cfg.split(":")
            rows.append(measure(ref, where, int(n), args.examples))
    for ref in {r["reference"] for r in rows}:
        same = {r["result"] for r in rows if r["reference"] == ref}
        assert len(same) == 1, f"{ref}: results differ between configurations"
    for r in rows:
        del r["result"]
    ratios = {}
    for ref in sorted({r["reference"] for r in rows}):
        for where in ("local", "cluster"):
            one = [r for r in rows if (r["reference"], r["where"], r["workers"]) == (ref, where, 1)]
            two = [r for r in rows if (r["reference"], r["where"], r["workers"]) == (ref, where, 2)]
            if one and two:
                ratios[f"{ref}/{where}"] = round(two[0]["examples_per_second"]
                                                 / one[0]["examples_per_second"], 2)
    if args.json:
        print(json.dumps({"rows": rows, "two_over_one": ratios, "cores": os.cpu_count()}))
        return 0
    print(f"{'reference':10} {'where':8} {'workers':>7} {'examples':>8} {'seconds':>8} "
          f"{'ex/s':>8} {'load':>11}")
    for r in rows:
        print(f"{r['reference']:10} {r['where']:8} {r['workers']:>7} {r['examples']:>8} "
              f"{r['seconds']:>8} {r['examples_per_second']:>8} "
              f"{r['load_before']:>5}-{r['load_after']:<5}")
    for k, v in ratios.items():
        print(f"2 workers / 1 worker, {k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
