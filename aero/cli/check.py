"""``aero check``: replay a trace with invariant oracles attached and report violations.

Exit codes follow aero.cli: 0 no violation, 1 at least one violation, 2 usage or input
error (a missing or damaged trace, an oracle that cannot be loaded or that failed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aero.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_progress_options,
    add_trace_argument,
    console,
    integer,
    progress,
    trace_path,
)


def _region(s: str) -> tuple[int, int]:
    from aero.oracles.builtin_memory import parse_region

    try:
        return parse_region(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="replay a trace with invariant oracles and report "
                                     "violations")
    add_trace_argument(p)
    p.add_argument("--oracle", action="append", metavar="NAME|FILE.py:CLASS", default=None,
                   help="an oracle to run (repeatable; default: every built-in except the "
                        "per-instruction ones); see --list")
    p.add_argument("--list", action="store_true", help="list the oracles and exit")
    p.add_argument("--readonly", action="append", type=_region, default=[],
                   metavar="START+LEN", help="memory: a read-only region (repeatable)")
    p.add_argument("--fail-pattern", action="append", default=None, metavar="TEXT",
                   help="guest-output: a failure pattern (repeatable; replaces the defaults "
                        "'Kernel panic', 'FAIL', 'panic:')")
    p.add_argument("--pass-pattern", action="append", default=[], metavar="TEXT",
                   help="guest-output: a pattern the output must show (repeatable)")
    p.add_argument("--stall-ticks", type=integer("tick count", lo=1), default=None,
                   metavar="TICKS",
                   help="liveness: ticks without progress that make a stall (default: 30 "
                        "guest seconds)")
    p.add_argument("--chain", type=integer("event count", hi=10_000), default=16,
                   metavar="N", help="events shown before each violation (0 to 10,000; "
                                     "default 16)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_options(p)
    p.set_defaults(func=cmd_check)


def _options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Constructor arguments of the configurable built-ins, from the command line."""
    out: dict[str, dict[str, Any]] = {"memory": {"regions": args.readonly},
                                      "guest-output": {"passed": args.pass_pattern},
                                      "liveness": {"stall_ticks": args.stall_ticks}}
    if args.fail_pattern is not None:
        out["guest-output"]["fail"] = args.fail_pattern
    return out


def build_oracles(specs: list[str] | None, options: dict[str, dict[str, Any]]) -> list:
    """Instantiate the oracles named by ``specs`` (default: the default set)."""
    from aero import oracles

    return oracles.build(specs, options)


def list_oracles() -> list[dict[str, Any]]:
    from aero import oracles

    defaults = set(oracles.default_names())
    return [{"name": n, "description": oracles.get(n).description(),
             "per_instruction": oracles.get(n).per_instruction, "default": n in defaults}
            for n in oracles.names()]


def cmd_check(args: argparse.Namespace) -> int:
    from aero import oracles
    from aero.traces.container import TraceError, open_trace
    from aero.traces.replay import ReplayError, load_contents

    if args.list:
        rows = list_oracles()
        if args.json:
            print(json.dumps({"oracles": rows}))
        else:
            for r in rows:
                note = "" if r["default"] else " (not by default: per instruction, slow)"
                print(f"{r['name']:20s} {r['description']}{note}")
        return EXIT_OK
    try:
        selected = build_oracles(args.oracle, _options(args))
    except oracles.OracleError as exc:
        raise CliError(str(exc)) from None
    path: Path = trace_path(args.trace)
    try:
        contents = load_contents(open_trace(path))
        with progress(args, "checking", contents.end_tick, "ticks") as prog:
            result = oracles.check_trace(contents, selected, chain_length=args.chain,
                                         on_progress=prog.update)
    except (TraceError, ReplayError, oracles.OracleError) as exc:
        raise CliError(str(exc)) from None
    out = {"trace": str(path), **result.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        _print_report(out)
    return EXIT_FAIL if result.violations else EXIT_OK


_DECIMAL = ("tick", "since", "count", "changed", "cpl", "channel", "index")


def _fmt(key: str, v: object) -> str:
    """Ticks and counts in decimal, register values and addresses in hex."""
    if isinstance(v, bool) or not isinstance(v, int):
        return str(v)
    if v < 10 or any(word in key for word in _DECIMAL):
        return f"{v:,}"
    return f"{v:#x}"


def _print_report(out: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console()
    replay = out["replay"]
    violations = out["violations"]
    if violations:
        t = Table(title=f"aero check: {len(violations)} violation"
                        f"{'s' if len(violations) != 1 else ''} in {out['trace']}")
        for col in ("tick", "oracle", "message", "state"):
            t.add_column(col, justify="right" if col == "tick" else "left",
                         overflow="fold")
        for v in violations:
            state = ", ".join(f"{k}={_fmt(k, x)}" for k, x in v["state"].items())
            t.add_row(f"{v['tick']:,}", v["oracle"], escape(v["message"]), escape(state),
                      style="red")
        con.print(t)
        for v in violations:
            if not v["chain"]:
                continue
            con.print(f"[bold]events before tick {v['tick']:,}[/bold] ({v['oracle']}):")
            for e in v["chain"]:
                con.print(f"  {escape(e['text'])}", highlight=False)
    verdict = "[red]FAILED[/red]" if violations else "[green]passed[/green]"
    con.print(f"check {verdict}: {len(out['oracles'])} oracles "
                  f"({', '.join(out['oracles'])}), {replay['ticks']:,} ticks replayed, "
                  f"{replay['checkpoints_verified']} checkpoints, "
                  f"{len(violations)} violations", highlight=False)


COMMANDS = (add_check,)
