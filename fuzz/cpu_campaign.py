"""``aero fuzz cpu`` through the executor: chunks of Hypothesis campaigns, merged by index.

Each chunk is :func:`aero.fuzz.campaign.run_campaign` with the chunk's example count and
seed, once per reference (``unicorn``, ``qemu``). :func:`merge` adds the counts and keeps
one divergence per finding (the first in chunk order, its ``occurrences`` summed over
chunks), so the merged report is a pure function of (seed, examples, mode, classes,
references) whatever the number of workers.

Invariant: a chunk that could not be evaluated (its worker was lost twice) is listed in
``not_evaluated`` and makes the campaign fail; it is never counted as examples that passed.
"""

from __future__ import annotations

from collections.abc import Sequence

from .executor import (
    NOT_EVALUATED,
    Chunk,
    ChunkOutcome,
    merge_counts,
    module_independent_generation,
)

__all__ = ["REFERENCES", "close_checkers", "cpu_chunk", "finding_key", "merge"]

REFERENCES = ("unicorn", "qemu")
COUNTS = ("examples", "discarded", "runs", "explained_occurrences")


# The reference checkers of this process, by (modes, reference): a worker keeps its QEMU
# (and aero machine) from chunk to chunk instead of starting one per chunk. Every example
# reloads the whole state, so a chunk's result does not depend on what ran before it.
_CHECKERS: dict[tuple[tuple[str, ...], str], object] = {}


def _checker(mode: str, ref: str) -> object:
    from .campaign import Checker

    modes = ("real", "pm32", "pm32-paging") if mode == "all" else (mode,)
    key = (modes, ref)
    if key not in _CHECKERS:
        _CHECKERS[key] = Checker(list(modes), ref)
    return _CHECKERS[key]


def close_checkers() -> None:
    """End the reference processes this process kept for its chunks."""
    while _CHECKERS:
        _key, checker = _CHECKERS.popitem()
        checker.close()  # type: ignore[attr-defined]


def cpu_chunk(chunk: Chunk, params: dict) -> dict:
    """Run one chunk against every reference in ``params['against']``.

    Returns ``{reference: CampaignResult.to_dict() without elapsed_seconds}`` (JSON)."""
    from .campaign import run_campaign

    out: dict[str, dict] = {}
    for ref in params["against"]:
        with module_independent_generation():
            res = run_campaign(chunk.count, chunk.seed, params["mode"],
                               classes=params.get("classes"), reference=ref,
                               checker=_checker(params["mode"], ref))  # type: ignore[arg-type]
        d = res.to_dict()
        d.pop("elapsed_seconds", None)
        out[ref] = d
    return out


def finding_key(div: dict) -> str:
    """What makes two recorded divergences one finding: the explanation and signature."""
    exp = div.get("explanation")
    return f"{exp['key']}|{div['signature']}" if exp else div["signature"]


def merge(outcomes: Sequence[ChunkOutcome], references: Sequence[str]) -> dict:
    """The campaign report from its chunks (in index order)."""
    report: dict = {"references": {}, "not_evaluated": [
        {"chunk": o.index, "error": o.error} for o in outcomes if o.status == NOT_EVALUATED]}
    ok = [o.result for o in outcomes if o.status == "ok" and o.result is not None]
    for ref in references:
        parts = [r[ref] for r in ok]
        merged: dict = merge_counts(parts, COUNTS)
        found: dict[str, dict] = {}
        for p in parts:
            for div in p["divergences"]:
                k = finding_key(div)
                if k in found:
                    found[k]["occurrences"] += div["occurrences"]
                else:
                    found[k] = dict(div)
        reasons: dict[str, int] = {}
        for p in parts:
            for why, n in p.get("discard_reasons", {}).items():
                reasons[why] = reasons.get(why, 0) + n
        merged["discard_reasons"] = dict(sorted(reasons.items()))
        merged["divergences"] = list(found.values())
        merged["unexplained"] = sum(1 for d in found.values() if not d["explained"])
        if parts:
            for k in ("modes", "classes", "not_implemented", "known_divergences"):
                merged[k] = parts[0].get(k)
            if "transcendentals" in parts[0]:  # the fpu class's own counts (aero.fuzz.x87)
                from .x87 import merge_counts as x87_counts

                merged.update(x87_counts(parts))
        report["references"][ref] = merged
    report["examples"] = sum(r["examples"] for r in report["references"].values())
    report["unexplained"] = sum(r["unexplained"] for r in report["references"].values())
    return report
