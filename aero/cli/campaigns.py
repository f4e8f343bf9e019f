"""The executor's command-line options (``--jobs``, ``--dask``, ``--resume``, ``--chunk``)
and ``aero fuzz cpu`` run through it (:mod:`aero.fuzz.executor`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from aero.cli.common import EXIT_FAIL, EXIT_OK, CliError, integer, progress

__all__ = ["add_executor_arguments", "executor_spec", "run_campaign_cli", "run_cpu_campaign"]


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """Options every campaign takes."""
    g = p.add_argument_group("where the campaign runs")
    g.add_argument("--jobs", type=integer("job count", lo=1, hi=1024), default=None,
                   help="local worker processes (default: the number of cores; 1 runs in "
                        "this process)")
    g.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run on a Dask scheduler (tcp://HOST:PORT), or 'local' for a "
                        "LocalCluster of --jobs workers")
    g.add_argument("--resume", metavar="FILE", default=None,
                   help="append each finished chunk to FILE (JSON lines) and skip the chunks "
                        "FILE already holds")
    g.add_argument("--chunk", type=integer("chunk size", lo=1, hi=1_000_000), default=None,
                   help="examples per chunk (part of the campaign's identity: the result "
                        "depends on it, never on the number of workers)")


def executor_spec(args: argparse.Namespace):  # -> ExecutorSpec
    from aero.fuzz.executor import ExecutorSpec, default_jobs

    jobs = getattr(args, "jobs", None)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise CliError("--jobs must be at least 1")
    chunk = getattr(args, "chunk", None)
    if chunk is not None and int(chunk) < 1:
        raise CliError("--chunk must be at least 1")
    return ExecutorSpec(jobs=jobs, dask=getattr(args, "dask", None))


def run_campaign_cli(args: argparse.Namespace, label: str, fn: Callable, params: dict,
                     examples: int, seed: int):  # -> list[ChunkOutcome]
    """Run a campaign with the options of ``args``: progress bar on a terminal, a line
    every few seconds otherwise (unless --json or --no-progress)."""
    from aero.fuzz.executor import DEFAULT_CHUNK, ExecutorError, run

    spec = executor_spec(args)
    chunk = getattr(args, "chunk", None) or DEFAULT_CHUNK
    resume = getattr(args, "resume", None)
    kw = dict(chunk_size=int(chunk), results=Path(resume) if resume else None,
              resume=resume is not None)
    try:
        # aero.progress: a bar on a terminal, a line every few seconds otherwise, nothing
        # with --json (unless --progress) or --no-progress.
        with progress(args, label, examples, "examples") as prog:
            return run(label, fn, params, examples, seed, spec, progress=prog.update, **kw)
    except ExecutorError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{resume}: {exc.strerror}") from None


def _references(against: str) -> list[str]:
    from aero.fuzz.cpu_campaign import REFERENCES

    refs = [r for r in against.split(",") if r]
    bad = [r for r in refs if r not in REFERENCES]
    if not refs or bad:
        raise CliError(f"--against: unknown reference {', '.join(bad) or against!r}; "
                       f"known: {', '.join(REFERENCES)} (comma-separated)")
    if "qemu" in refs:
        from aero.fuzz.qemu_cpu import QemuUnavailable, check_qemu

        try:
            check_qemu()
        except QemuUnavailable as exc:
            raise CliError(str(exc)) from None
    return refs


def run_cpu_campaign(args: argparse.Namespace, examples: int,
                     classes: Sequence[str] | None) -> int:
    """``aero fuzz cpu`` through the executor; exit 1 on an unexplained divergence or a
    chunk that could not be evaluated."""
    import time

    from aero.fuzz.cpu_campaign import close_checkers, cpu_chunk, merge

    refs = _references(str(getattr(args, "against", "unicorn")))
    params = {"mode": args.mode, "classes": list(classes) if classes else None,
              "against": refs}
    start = time.monotonic()
    try:
        outcomes = run_campaign_cli(args, "fuzz cpu", cpu_chunk, params, examples,
                                    int(args.seed))
    finally:
        close_checkers()  # the references chunks run in this process kept (--jobs 1)
    report = merge(outcomes, refs)
    elapsed = time.monotonic() - start
    failed = report["unexplained"] > 0 or bool(report["not_evaluated"])
    if getattr(args, "json", False):
        out = dict(report["references"][refs[0]]) if len(refs) == 1 else {}
        out.update(report, seed=int(args.seed), elapsed_seconds=round(elapsed, 3))
        print(json.dumps(out))
        return EXIT_FAIL if failed else EXIT_OK
    from rich.console import Console

    console = Console(emoji=False, highlight=False, markup=False, soft_wrap=True)
    for ref in refs:
        r = report["references"][ref]
        for d in r["divergences"]:
            if not d["explained"]:
                _print_divergence(console, ref, d)
        explained = [d for d in r["divergences"] if d["explained"]]
        for d in explained:
            console.print(f"  explained [{d['explanation']['key']}] {d['signature']} "
                          f"{d['bytes']} ({d['decoded']}) x{d['occurrences']}")
        console.print(f"{ref}: examples {r['examples']}  discarded {r['discarded']}  "
                      f"divergences {len(r['divergences'])} (unexplained {r['unexplained']}, "
                      f"explained occurrences {r['explained_occurrences']})")
        for why, n in sorted(r.get("discard_reasons", {}).items(), key=lambda x: -x[1]):
            console.print(f"  discarded x{n}: {why}")
        if r.get("not_implemented"):
            console.print(f"not implemented in this core (left out): "
                          f"{', '.join(r['not_implemented'])}")
    for ne in report["not_evaluated"]:
        console.print(f"chunk {ne['chunk']} not evaluated: {ne['error']}")
    if getattr(args, "resume", None):
        console.print(f"{elapsed:.1f} s (chunks already in {args.resume} not run again)")
    else:
        console.print(f"{elapsed:.1f} s, {report['examples'] / max(elapsed, 1e-9):.1f} "
                      f"examples/s")
    return EXIT_FAIL if failed else EXIT_OK


def _print_divergence(console: object, ref: str, d: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{d['mode']}  {d['bytes']}  ({d['decoded']})  step {d['step'] + 1}/"
                        f"{len(d['code'])}  x{d['occurrences']}  UNEXPLAINED")
    for col in ("field", "aero", ref):
        table.add_column(col)
    for m in d["mismatches"]:
        table.add_row(m["field"], _hex(m["aero"]), _hex(m["ref"]))
    console.print(table)  # type: ignore[attr-defined]
    console.print("  sequence: " + " | ".join(d["code"]))  # type: ignore[attr-defined]


def _hex(v: int | None) -> str:
    return "-" if v is None else f"{v:#x}"
