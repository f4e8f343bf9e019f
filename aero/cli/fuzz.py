"""``aero fuzz`` and ``aero conformance``: aero against references and hardware data."""

from __future__ import annotations

import argparse
import json
import sys

from aero.cli.common import EXIT_FAIL, EXIT_OK, CliError


def _add_conformance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="hardware conformance suites")
    csub = p.add_subparsers(dest="suite", required=True)
    s = csub.add_parser("sst", help="run a SingleStepTests directory")
    s.add_argument("directory")
    s.add_argument("--only", nargs="*", help="opcode files to run (e.g. 00 80.1 F7.6)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_conformance_sst)


def cmd_conformance_sst(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aero.fuzz.sst import run_directory, suite_files, suite_root

    directory = Path(args.directory)
    if not directory.is_dir():
        raise CliError(f"{directory}: not a directory")
    show = not args.json and not args.no_progress and sys.stderr.isatty()
    try:
        if show:
            from rich.progress import Progress

            files = len(suite_files(suite_root(directory)))
            with Progress(transient=True) as prog:
                task = prog.add_task("conformance", total=files)
                result = run_directory(directory, set(args.only) if args.only else None,
                                       progress=lambda _k: prog.advance(task))
        else:
            result = run_directory(directory, set(args.only) if args.only else None)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result))
    else:
        _print_sst_table(result)
    return EXIT_OK if result["failed"] == 0 else EXIT_FAIL


def _print_sst_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"SingleStepTests: {result['directory']}")
    for col in ("opcode", "total", "passed", "failed", "excluded"):
        table.add_column(col, justify="right" if col != "opcode" else "left")
    for key, r in result["opcodes"].items():
        style = "red" if r["failed"] else None
        table.add_row(key, str(r["total"]), str(r["passed"]), str(r["failed"]),
                      str(r["excluded"]), style=style)
    console.print(table)
    reasons: dict[str, int] = {}
    for e in result["exclusions"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    for key, n in sorted(reasons.items()):
        console.print(f"excluded {n:5d}  [{key}] {result['exclusion_reasons'][key]}")
    for key, r in result["opcodes"].items():
        for f in r["failures"]:
            console.print(f"[red]FAIL[/red] {key} #{f['idx']} {f['name']} ({f['bytes']}): "
                          f"{f['registers']} {f['ram']}")
    console.print(f"total {result['total']}  passed {result['passed']}  "
                  f"failed {result['failed']}  excluded {result['excluded']}")


def _add_fuzz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuzz", help="differential fuzzing")
    fsub = p.add_subparsers(dest="target", required=True)
    c = fsub.add_parser("cpu", help="instruction-level differential fuzzing of the CPU")
    c.add_argument("--against", choices=("unicorn",), default="unicorn")
    c.add_argument("--examples", type=int, default=1000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--mode", choices=("real", "pm32", "pm32-paging", "all"), default="all",
                   help="CPU mode of the generated code: real mode, flat 32-bit protected "
                        "mode, the same with paging on (CPL 0 and 3), or all three "
                        "(default)")
    c.add_argument("--json", action="store_true")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--classes", default=None,
                   help="comma-separated instruction classes (default: every comparable "
                        "one): alu,data,stack,flow,string,system,invalid")
    c.set_defaults(func=cmd_fuzz_cpu)


def cmd_fuzz_cpu(args: argparse.Namespace) -> int:
    """``aero fuzz cpu``: exit 0 when no unexplained divergence, 1 otherwise, 2 on bad
    arguments."""
    from aero.fuzz.campaign import (
        print_divergence,
        print_explained,
        run_campaign,
        scenarios,
    )

    examples = int(args.examples)  # type: ignore[attr-defined]
    if examples < 1:
        raise CliError("--examples must be at least 1")
    if getattr(args, "against", "unicorn") != "unicorn":
        raise CliError("only --against unicorn is supported")
    classes = getattr(args, "classes", None)
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c]
    try:
        if classes:
            scenarios(["real"], classes)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    as_json = bool(getattr(args, "json", False))
    show = not as_json and not getattr(args, "no_progress", False) and sys.stderr.isatty()
    mode, seed = args.mode, int(args.seed)  # type: ignore[attr-defined]
    if show:
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task("fuzz cpu", total=examples)
            result = run_campaign(examples, seed, mode,
                                  progress=lambda n: prog.update(task, completed=n),
                                  classes=classes)
    else:
        result = run_campaign(examples, seed, mode, classes=classes)
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        from rich.console import Console

        console = Console(emoji=False, highlight=False)
        for div in result.unexplained:
            print_divergence(console, div)
        print_explained(console, [d for d in result.divergences if d.explained])
        console.print(
            f"examples {result.examples}  discarded {result.discarded}  "
            f"divergences {len(result.divergences)} "
            f"(unexplained {len(result.unexplained)}, explained occurrences "
            f"{result.explained_count})  runs {result.runs}  {result.elapsed:.1f} s")
        if result.not_implemented:
            console.print(f"not implemented in this core (left out): "
                          f"{', '.join(result.not_implemented)}")
    return EXIT_FAIL if result.unexplained else EXIT_OK


COMMANDS = (_add_conformance, _add_fuzz)
