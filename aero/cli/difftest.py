"""``aero difftest GUEST... --against qemu``: whole-system differential runs
(:mod:`aero.fuzz.wholesystem`), one guest per chunk of the campaign executor."""

from __future__ import annotations

import argparse
import json

from aero.cli.campaigns import add_executor_arguments, run_campaign_cli
from aero.cli.common import EXIT_FAIL, EXIT_OK, CliError, add_progress_options, integer

__all__ = ["COMMANDS", "cmd_difftest"]


def _add_difftest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("difftest", help="run guests in aero and QEMU, report where they part")
    p.add_argument("guests", nargs="*", help="bundled guest names or images (default with "
                                             "--all: every bundled guest)")
    p.add_argument("--all", action="store_true", help="every bundled guest (aero run --list)")
    p.add_argument("--against", choices=("qemu",), default="qemu",
                   help="the reference to run the guests in (qemu)")
    p.add_argument("--max-steps", type=integer("step count", lo=1, hi=100_000_000),
                   default=None, metavar="N",
                   help="instructions compared in lockstep (default 5000)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_progress_options(p)
    add_executor_arguments(p)
    p.set_defaults(func=cmd_difftest)


def cmd_difftest(args: argparse.Namespace) -> int:
    """Exit 0 when every guest ran identically, 1 otherwise, 2 on bad input."""
    from aero import guests
    from aero.fuzz.qemu_cpu import QemuUnavailable, check_qemu
    from aero.fuzz.wholesystem import DEFAULT_MAX_STEPS, difftest_chunk
    from aero.launch import LaunchError, resolve_guest

    names = list(args.guests) + (list(guests.GUESTS) if args.all else [])
    if not names:
        raise CliError("difftest needs a guest (or --all)")
    try:
        check_qemu()
    except QemuUnavailable as exc:
        raise CliError(str(exc)) from None
    for g in names:
        try:
            resolve_guest(g)
        except LaunchError as exc:
            raise CliError(str(exc)) from None
    steps = DEFAULT_MAX_STEPS if args.max_steps is None else int(args.max_steps)
    if steps < 0:
        raise CliError("--max-steps must be at least 0")
    if getattr(args, "chunk", None) is None:
        args.chunk = 1
    outcomes = run_campaign_cli(args, "difftest", difftest_chunk,
                                {"guests": names, "max_steps": steps}, len(names), 0)
    reports, missing = [], []
    for o in outcomes:
        if o.status == "ok" and o.result is not None:
            reports += o.result["reports"]
        else:
            missing.append({"chunk": o.index, "error": o.error})
    ok = all(r["identical"] for r in reports) and not missing
    if args.json:
        out = reports[0] if len(names) == 1 and reports else {"guests": reports}
        if missing:
            out = dict(out, not_evaluated=missing)
        print(json.dumps(out))
        return EXIT_OK if ok else EXIT_FAIL
    for r in reports:
        d = r["first_divergence"]
        verdict = "identical" if r["identical"] else f"differs: {d['kind']}"
        print(f"{r['guest']:16} {verdict:22} lockstep {r['lockstep']} "
              f"({r['lockstep_steps']} instructions)")
        if d and d["kind"] == "registers":
            regs = ", ".join(f"{k} aero {v['aero']:#x} qemu {v['qemu']:#x}"
                             for k, v in d["registers"].items())
            print(f"    at EIP {d['eip']:#x}, instruction {d.get('step')}: {regs}")
        elif d and d["kind"] == "output":
            print(f"    output byte {d['offset']} (line {d['line']}): aero {d['aero']!r} "
                  f"qemu {d['qemu']!r}")
        elif d:
            print(f"    exit status: aero {d['aero']} qemu {d['qemu']}")
    for m in missing:
        print(f"chunk {m['chunk']} not evaluated: {m['error']}")
    return EXIT_OK if ok else EXIT_FAIL


COMMANDS = (_add_difftest,)
