"""``aero fuzz`` and ``aero conformance``: aero against references and hardware data."""

from __future__ import annotations

import argparse
import json
import sys

from aero.cli.campaigns import add_executor_arguments, run_campaign_cli, run_cpu_campaign
from aero.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_progress_options,
    console,
    existing_dir,
    integer,
    mark_path,
)
from aero.cli.inputs import add_fuzz_inputs


def _add_conformance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="hardware conformance suites")
    csub = p.add_subparsers(dest="suite", required=True)
    s = csub.add_parser("sst", help="run a SingleStepTests directory")
    mark_path(s.add_argument("directory", type=existing_dir,
                             help="a directory of SingleStepTests files"), "dir")
    s.add_argument("--only", nargs="+", metavar="OPCODE",
                   help="opcode files to run (e.g. 00 80.1 F7.6)")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    add_progress_options(s)
    add_executor_arguments(s)
    s.set_defaults(func=cmd_conformance_sst)


def cmd_conformance_sst(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aero.fuzz.sst import run_directory, suite_root

    directory: Path = args.directory
    from aero.fuzz.sst_campaign import files, merge, sst_chunk

    try:
        keys = files(directory, set(args.only) if args.only else None)
        if not (suite_root(directory) / "metadata.json").exists():
            run_directory(directory, set())  # the error for a directory without metadata
        if getattr(args, "chunk", None) is None:
            args.chunk = 1
        outcomes = run_campaign_cli(args, "conformance", sst_chunk,
                                    {"directory": str(directory), "keys": keys}, len(keys), 0)
        result = merge(outcomes, str(suite_root(directory)))
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
    else:
        _print_sst_table(result)
    for ne in result["not_evaluated"]:
        print(f"chunk {ne['chunk']} not evaluated: {ne['error']}", file=sys.stderr)
    return EXIT_OK if result["failed"] == 0 and not result["not_evaluated"] else EXIT_FAIL


def _print_sst_table(result: dict) -> None:
    from rich.table import Table

    con = console()
    table = Table(title=f"SingleStepTests: {result['directory']}")
    for col in ("opcode", "total", "passed", "failed", "excluded"):
        table.add_column(col, justify="right" if col != "opcode" else "left")
    for key, r in result["opcodes"].items():
        style = "red" if r["failed"] else None
        table.add_row(key, str(r["total"]), str(r["passed"]), str(r["failed"]),
                      str(r["excluded"]), style=style)
    con.print(table)
    reasons: dict[str, int] = {}
    for e in result["exclusions"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    for key, n in sorted(reasons.items()):
        con.print(f"excluded {n:5d}  [{key}] {result['exclusion_reasons'][key]}")
    for key, r in result["opcodes"].items():
        for f in r["failures"]:
            con.print(f"[red]FAIL[/red] {key} #{f['idx']} {f['name']} ({f['bytes']}): "
                          f"{f['registers']} {f['ram']}")
    con.print(f"total {result['total']}  passed {result['passed']}  "
                  f"failed {result['failed']}  excluded {result['excluded']}")


def _add_fuzz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", help="differential fuzzing")
    fsub = p.add_subparsers(dest="target", required=True)
    c = fsub.add_parser("cpu", help="instruction-level differential fuzzing of the CPU")
    c.add_argument("--against", default="unicorn", metavar="REF[,REF]",
                   help="reference(s), comma-separated: unicorn, qemu (default unicorn)")
    c.add_argument("--examples", type=integer("example count", lo=1, hi=100_000_000),
                   default=1000, metavar="N", help="generated examples (default 1000)")
    c.add_argument("--seed", type=integer("seed", hi=2**64 - 1), default=0, metavar="S",
                   help="the campaign's seed: the same seed gives the same examples (default 0)")
    c.add_argument("--mode", choices=("real", "pm32", "pm32-paging", "all"), default="all",
                   help="CPU mode of the generated code: real mode, flat 32-bit protected "
                        "mode, the same with paging on (CPL 0 and 3), or all three "
                        "(default)")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    add_progress_options(c)
    c.add_argument("--classes", default=None,
                   help="comma-separated instruction classes (default: every comparable "
                        "one): alu,data,stack,flow,string,system,invalid; or fpu alone, the x87 "
                        "class)")
    add_executor_arguments(c)
    c.set_defaults(func=cmd_fuzz_cpu)
    add_fuzz_inputs(fsub)


def cmd_fuzz_cpu(args: argparse.Namespace) -> int:
    """``aero fuzz cpu``: exit 0 when no unexplained divergence, 1 otherwise, 2 on bad
    arguments."""
    from aero.fuzz.campaign import scenarios

    examples = int(args.examples)  # type: ignore[attr-defined]
    if examples < 1:
        raise CliError("--examples must be at least 1")
    classes = getattr(args, "classes", None)
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c]
    try:
        if classes == ["fpu"]:
            pass  # the x87 class (aero.fuzz.x87): flat 32-bit protected mode, Unicorn
        elif classes:
            scenarios(["real"], classes)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return run_cpu_campaign(args, examples, classes)


COMMANDS = (_add_conformance, _add_fuzz)
