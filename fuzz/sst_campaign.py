"""``aero conformance sst DIR`` through the executor: one opcode file per example.

Chunks hold consecutive files (in name order); :func:`merge` adds the counts and joins the
per-opcode results and exclusions in file order, so the summary equals
:func:`aero.fuzz.sst.run_directory` over the whole directory, whatever the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .executor import Chunk, ChunkOutcome

__all__ = ["files", "merge", "sst_chunk"]


def files(directory: Path, only: set[str] | None = None) -> list[str]:
    """The opcode keys of a directory's test files, in name order."""
    from .sst import _opcode_key, suite_files, suite_root

    keys = [_opcode_key(p) for p in suite_files(suite_root(Path(directory)))]
    return [k for k in keys if not only or k in only]


def sst_chunk(chunk: Chunk, params: dict) -> dict:
    """The summary of this chunk's opcode files."""
    from .sst import run_directory

    keys = params["keys"][chunk.start:chunk.start + chunk.count]
    return run_directory(Path(params["directory"]), set(keys))


def merge(outcomes: Sequence[ChunkOutcome], directory: str) -> dict:
    ok = [o.result for o in outcomes if o.status == "ok" and o.result is not None]
    out: dict = {"directory": directory, "files": 0, "total": 0, "passed": 0, "failed": 0,
                 "excluded": 0, "adjusted": 0,
                 "exclusion_reasons": ok[0]["exclusion_reasons"] if ok else {},
                 "exclusions": [], "adjustments": [], "opcodes": {},
                 "not_evaluated": [{"chunk": o.index, "error": o.error}
                                   for o in outcomes if o.status != "ok"]}
    for r in ok:
        for k in ("files", "total", "passed", "failed", "excluded", "adjusted"):
            out[k] += r[k]
        out["exclusions"] += r["exclusions"]
        out["adjustments"] += r["adjustments"]
        out["opcodes"].update(r["opcodes"])
    return out
