"""``aero fuzz inputs GUEST --oracle NAME``: fuzzing of device-input schedules
(:mod:`aero.fuzz.inputs`), run through the campaign executor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aero.cli.campaigns import add_executor_arguments, run_campaign_cli
from aero.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_progress_options,
    integer,
    mark_path,
)

__all__ = ["add_fuzz_inputs", "cmd_fuzz_inputs"]

DEFAULT_CORPUS = "tests/corpus/inputs"


def add_fuzz_inputs(fsub: argparse._SubParsersAction) -> None:
    p = fsub.add_parser("inputs", help="fuzz a guest's input schedules against an oracle")
    mark_path(p.add_argument("guest", help="a bundled guest name or a guest image"))
    p.add_argument("--oracle", required=True,
                   help="output-contains:TEXT, exit-status:N, an invariant oracle name, or "
                        "FILE.py:Class (a failing schedule makes it report)")
    p.add_argument("--examples", type=integer("example count", lo=1, hi=10_000_000),
                   default=200, metavar="N", help="generated input schedules (default 200)")
    p.add_argument("--seed", type=integer("seed", hi=2**64 - 1), default=0, metavar="S",
                   help="the campaign's seed: the same seed gives the same schedules "
                        "(default 0)")
    p.add_argument("--kinds", default="serial,key,rtc,nmi",
                   help="input kinds to generate: serial,key,rtc,nmi,reset")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, metavar="DIR",
                   help=f"where a minimised failing schedule is written (default "
                        f"{DEFAULT_CORPUS})")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_progress_options(p)
    add_executor_arguments(p)
    p.set_defaults(func=cmd_fuzz_inputs)


def cmd_fuzz_inputs(args: argparse.Namespace) -> int:
    """Exit 1 when a failing schedule was found (and saved), 0 when none, 2 on bad input."""
    from aero.fuzz.inputs import KINDS, inputs_chunk, merge, minimise_and_save
    from aero.oracles import failure_predicate
    from aero.traces.bisect import BisectError

    examples = int(args.examples)
    if examples < 1:
        raise CliError("--examples must be at least 1")
    kinds = [k for k in str(args.kinds).split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise CliError(f"--kinds: unknown {', '.join(bad) or 'nothing'}; known: "
                       f"{', '.join(KINDS)}")
    try:
        failure_predicate(args.oracle)
    except BisectError as exc:
        raise CliError(str(exc)) from None
    from aero.launch import LaunchError, resolve_guest

    try:
        resolve_guest(str(args.guest), "auto", 0x7C00)
    except LaunchError as exc:
        raise CliError(str(exc)) from None
    params = {"guest": str(args.guest), "oracle": args.oracle, "kinds": kinds}
    outcomes = run_campaign_cli(args, "fuzz inputs", inputs_chunk, params, examples,
                                int(args.seed))
    report = merge(outcomes)
    report.update(guest=str(args.guest), oracle=args.oracle, seed=int(args.seed))
    saved = None
    if report["failing"]:
        safe = "".join(ch if ch.isalnum() else "-" for ch in args.oracle).strip("-")[:40]
        name = f"{Path(str(args.guest)).stem}-{safe}-seed{int(args.seed)}"
        saved = minimise_and_save(str(args.guest), args.oracle, report["failing"],
                                  Path(args.corpus), name)
    report["saved"] = saved
    if args.json:
        print(json.dumps(report))
    else:
        print(f"examples {report['examples']}  failing chunks {report['failing_chunks']}")
        for ne in report["not_evaluated"]:
            print(f"chunk {ne['chunk']} not evaluated: {ne['error']}")
        if saved:
            print(f"failing schedule: {len(report['failing'])} events after shrinking, "
                  f"{len(saved['events'])} after minimisation:")
            for e in saved["events"]:
                print(f"  tick {e['tick']:>12}  kind {e['kind']}  a {e['a']:#x}  b {e['b']:#x}")
            print(f"saved {saved['trace']}")
        else:
            print("no failing schedule found")
    if report["failing"] or report["not_evaluated"]:
        return EXIT_FAIL
    return EXIT_OK
