"""``aero ls``: the recorded traces in the trace directory, like ``rr ls``.

Each ``*.aerotrace`` file in the trace directory ($AERO_TRACE_DIR) is opened from its index
(no full read): guest, last tick, size, creation date, and whether it was closed cleanly.
A file that cannot be opened is listed as damaged with the reason, never a crash. Exit 0
(an empty or missing directory lists nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aero.cli.common import EXIT_OK, LATEST, console


def add_ls(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="the recorded traces in the trace directory")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_ls)


def describe(path: Path) -> dict:
    """One row of ``aero ls`` for ``path``: never raises for a damaged file."""
    from aero.traces import codec
    from aero.traces.container import FrameKind, TraceError, open_trace

    row: dict = {"trace": path.name, "path": str(path), "guest": None, "ticks": None,
                 "bytes": None, "created": None, "complete": False, "damaged": None}
    try:
        row["bytes"] = path.stat().st_size
        t = open_trace(path, verify=False)
        guest = t.metadata.get("guest")
        row["guest"] = guest.get("name") if isinstance(guest, dict) else None
        row["created"] = t.metadata.get("created")
        row["complete"] = t.complete
        row["ticks"] = max((f.last_tick for f in t.frames), default=0)
        summaries = list(t.of_kind(FrameKind.SUMMARY))
        if summaries:
            summary = codec.decode_json(t.read(summaries[-1]), summaries[-1], "summary")
            if isinstance(summary, dict) and isinstance(summary.get("ticks"), int):
                row["ticks"] = summary["ticks"]
    except (TraceError, OSError, ValueError) as exc:
        row["damaged"] = str(exc).replace(str(path), path.name) if str(exc) else \
            type(exc).__name__
        row["complete"] = False
    return row


def list_traces(root: Path) -> list[dict]:
    """Every trace file in ``root``, oldest first (by name order within a second)."""
    if not root.is_dir():
        return []
    latest = (root / LATEST).resolve() if (root / LATEST).exists() else None
    rows = []
    for path in sorted(root.glob("*.aerotrace")):
        if not path.is_file():
            continue
        row = describe(path)
        row["latest"] = latest is not None and path.resolve() == latest
        try:
            row["mtime"] = path.stat().st_mtime
        except OSError:
            row["mtime"] = 0.0
        rows.append(row)
    rows.sort(key=lambda r: (r["mtime"], r["trace"]))
    return rows


def cmd_ls(args: argparse.Namespace) -> int:
    from aero.traces.record import trace_dir

    root = trace_dir()
    rows = list_traces(root)
    if args.json:
        print(json.dumps({"trace_dir": str(root), "traces": rows}))
        return EXIT_OK
    if not rows:
        print(f"no traces in {root}")
        return EXIT_OK
    from rich.table import Table

    t = Table(title=str(root))
    for col in ("trace", "guest", "ticks", "size", "created", "state"):
        t.add_column(col, justify="right" if col in ("ticks", "size") else "left")
    for r in rows:
        state = f"damaged: {r['damaged']}" if r["damaged"] else \
            ("complete" if r["complete"] else "incomplete (recorder killed)")
        name = r["trace"] + (" (latest)" if r["latest"] else "")
        t.add_row(name, r["guest"] or "?", f"{r['ticks']:,}" if r["ticks"] is not None else "?",
                  f"{r['bytes']:,}" if r["bytes"] is not None else "?",
                  str(r["created"] or "?").replace("T", " ").rstrip("Z"), state,
                  style="red" if r["damaged"] else None)
    console().print(t)
    return EXIT_OK


COMMANDS = (add_ls,)
