"""A history of benchmark figures: saved runs (with the commit and the machine that produced
them) and today's figures next to a saved run.

A saved run is the ``aero bench --json`` report wrapped with where it came from::

    {"format": "aero-bench/1", "commit": "...", "dirty": false, "date": "2026-12-03",
     "machine": {...}, "report": {...}}

:func:`figures` flattens a report into named figures (``alu.mips``,
``record_replay.record_overhead_percent`` ...) whose direction is known (higher or lower is
better), so that :func:`compare` can say whether a change is a slowdown.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["FORMAT", "Comparison", "RESULTS_DIR", "compare", "describe_machine", "figures",
           "load", "save"]

FORMAT = "aero-bench/1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Figure name suffix -> True when a higher value is better.
_HIGHER_IS_BETTER = {
    "mips": True, "unicorn_mips": True, "qemu_mips": True, "aero_qemu_ratio": True,
    "aero_unicorn_ratio": True, "syscalls_per_second": True, "bytes_per_second": True,
    "record_overhead_percent": False, "replay_speed_percent_of_record": True,
    "plain_mips": True, "bytes_per_million_ticks": False, "seconds": False,
}


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                           cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def describe_machine() -> dict[str, object]:
    """What the figures depend on: CPU model, cores, OS, Python, the core's build stamp."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from aero._stamp import compute_stamp

    return {"cpu": model, "cores": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version(), "core_stamp": compute_stamp()}


def save(report: dict, path: Path | None = None) -> Path:
    """Write ``report`` with the commit, date and machine; the default name is
    ``benchmarks/results/DATE-COMMIT.json``. Returns the path written."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    doc = {"format": FORMAT, "commit": commit, "dirty": dirty, "date": date,
           "machine": describe_machine(), "report": report}
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{date}-{commit}{'-dirty' if dirty else ''}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load(path: Path) -> dict:
    """A saved run (or a bare ``aero bench --json`` report, wrapped). Raises ValueError for
    anything else."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a saved benchmark run ({exc})") from None
    if isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("report"),
                                                                             dict):
        return doc
    if isinstance(doc, dict) and ("workloads" in doc or "record_replay" in doc):
        return {"format": FORMAT, "commit": None, "machine": None, "report": doc}
    raise ValueError(f"{path}: not a saved benchmark run (no {FORMAT} report)")


def figures(report: dict) -> dict[str, float]:
    """The report's figures by name (only numbers; missing ones are left out)."""
    out: dict[str, float] = {}
    for w in report.get("workloads", []) or []:
        for key in ("mips", "unicorn_mips", "qemu_mips", "aero_unicorn_ratio",
                    "aero_qemu_ratio", "syscalls_per_second", "bytes_per_second"):
            v = w.get(key)
            if isinstance(v, (int, float)):
                out[f"{w.get('name')}.{key}"] = float(v)
    rr = report.get("record_replay") or {}
    cpu = rr.get("cpu") or {}
    for key in ("plain_mips", "record_overhead_percent", "replay_speed_percent_of_record",
                "bytes_per_million_ticks"):
        v = cpu.get(key)
        if isinstance(v, (int, float)):
            out[f"record_replay.{key}"] = float(v)
    pin = rr.get("pinpoint") or {}
    if isinstance(pin.get("seconds"), (int, float)):
        out["record_replay.pinpoint.seconds"] = float(pin["seconds"])
    return out


@dataclass(frozen=True)
class Comparison:
    """One figure in a saved run and today."""

    name: str
    saved: float | None
    today: float | None

    @property
    def ratio(self) -> float | None:
        """today / saved."""
        return self.today / self.saved if self.saved and self.today is not None else None

    @property
    def better(self) -> bool | None:
        """True when today is better, False when worse, None when equal or unknown."""
        if self.saved is None or self.today is None or self.today == self.saved:
            return None
        higher = _HIGHER_IS_BETTER.get(self.name.rsplit(".", 1)[-1], True)
        return (self.today > self.saved) == higher


def compare(saved: dict, today: dict) -> list[Comparison]:
    """Every figure of either report, saved next to today's."""
    a, b = figures(saved), figures(today)
    return [Comparison(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))]
