"""Peak memory of recording, replaying and inspecting an output-heavy trace.

The ``flood`` guest writes one byte to the debug console every second tick, so a recording
of 2N ticks holds N output events. Each step runs in its own process (``python -m aero``)
and its peak resident set size is read from the kernel (``wait4``'s ru_maxrss): the figure
must stay flat as N grows, because replay and ``info`` read the trace frame by frame and the
recorder writes frames by size.

Usage: ``python -m aero.bench.replay_memory [N ...] [--dir DIR] [--json]``
(default N: 1e6 and 1e7).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["measure", "run_measured"]

CHECKPOINT_INTERVAL = 1_000_000  # as in the report that found replay growing with the trace


def run_measured(args: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """Run ``python -m aero ARGS``; its exit code, wall time, peak RSS (MB) and stdout."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "aero", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, **(env or {})})
    deadline = t0 + timeout
    out = bytearray()
    os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
    os.set_blocking(proc.stderr.fileno(), False)  # type: ignore[union-attr]
    err = bytearray()
    while True:
        for stream, buf in ((proc.stdout, out), (proc.stderr, err)):
            chunk = stream.read() if stream is not None else None  # type: ignore[union-attr]
            if chunk:
                buf += chunk
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, 15)
            time.sleep(2)
            os.killpg(proc.pid, 9)
            os.wait4(proc.pid, 0)
            raise TimeoutError(f"aero {' '.join(args)} took more than {timeout} s")
        time.sleep(0.05)
    for stream, buf in ((proc.stdout, out), (proc.stderr, err)):
        rest = stream.read() if stream is not None else None  # type: ignore[union-attr]
        if rest:
            buf += rest
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"code": proc.returncode, "seconds": round(time.monotonic() - t0, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


def measure(events: int, workdir: Path, *, timeout: float = 7200) -> dict:
    """Record ``events`` output events of the flood guest, then replay and inspect the
    trace, each in its own process."""
    trace = workdir / f"flood-{events}.aerotrace"
    env = {"AERO_IMAGE_STORE": str(workdir / "images")}
    rec = run_measured(["record", "flood", "--ticks", str(2 * events), "-o", str(trace),
                        "--checkpoint-interval", str(CHECKPOINT_INTERVAL), "--quiet",
                        "--json"], timeout, env)
    if rec["code"] != 0:
        raise RuntimeError(f"record failed: {rec['stderr'][-500:]}")
    rep = run_measured(["replay", str(trace), "--json", "--quiet"], timeout, env)
    info = run_measured(["info", str(trace), "--json"], timeout, env)
    replay = json.loads(rep["stdout"]) if rep["code"] == 0 else {}
    return {"output_events": events, "ticks": 2 * events,
            "trace_bytes": trace.stat().st_size,
            "record": {k: rec[k] for k in ("code", "seconds", "peak_rss_mb")},
            "replay": {k: rep[k] for k in ("code", "seconds", "peak_rss_mb")},
            "replay_events_verified": replay.get("events_verified"),
            "info": {k: info[k] for k in ("code", "seconds", "peak_rss_mb")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("events", nargs="*", type=lambda s: int(float(s)),
                   default=[1_000_000, 10_000_000])
    p.add_argument("--dir", help="keep the traces here (default: a temporary directory)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aero-replay-memory-") as tmp:
        work = Path(args.dir) if args.dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for n in args.events:
            row = measure(n, work)
            rows.append(row)
            if not args.json:
                print(f"{n:>13,} output events  trace {row['trace_bytes']:>12,} bytes  "
                      f"record {row['record']['peak_rss_mb']:>7} MB  "
                      f"replay {row['replay']['peak_rss_mb']:>7} MB "
                      f"({row['replay']['seconds']} s)  "
                      f"info {row['info']['peak_rss_mb']:>7} MB", flush=True)
        if args.json:
            print(json.dumps(rows))
    return 0 if all(r["replay"]["code"] == 0 and r["info"]["code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
