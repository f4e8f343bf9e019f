"""The ``aero diff`` and ``aero bisect`` commands (and ``aero fingerprints``, which ``aero
bisect build`` asks of another installation).

Exit codes: 0 identical (or, for ``bisect inputs``, a minimal trace written), 1 different,
2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from aero.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_progress_options,
    add_trace_argument,
    console,
    existing_dir,
    integer,
    mark_path,
    output_file,
    progress,
    tick_list,
    trace_path,
)

# ---- rendering ------------------------------------------------------------------------------

def _hexrow(a: str, b: str, style: str) -> str:
    out = []
    for i in range(0, len(a), 2):
        x, y = a[i:i + 2], b[i:i + 2]
        out.append(f"[{style}]{x}[/]" if x != y else x)
    return " ".join(out)


def _instruction(ins: dict | None) -> str:
    if ins is None:
        return "(none)"
    text = f"{ins['cs']:04x}:{ins['eip']:08x} (linear {ins['linear']:08x}, {ins['mode']}-bit)  " \
           f"{ins['bytes']:<16} {ins['text']}"
    if ins.get("symbol"):
        text += f"  <{ins['symbol']}>"
    if ins.get("interrupts"):
        text += "  [interrupt " + ", ".join(f"{v:#04x}" for v in ins["interrupts"]) + " taken]"
    return text


def print_divergence(fd: dict, names: tuple[str, str], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console()
    con.print(f"[bold]{title}[/bold]: tick {fd['tick']:,} ({fd['cause']})")
    if fd.get("instruction"):
        t = Table(title=f"instruction executed at tick {fd['tick'] - 1:,}", show_header=True)
        t.add_column("run")
        t.add_column("instruction")
        for side, name in zip(("a", "b"), names, strict=True):
            t.add_row(name, escape(_instruction(fd["instruction"][side])))
        con.print(t)
    for side, name in zip(("a", "b"), names, strict=True):
        for e in fd["inputs"][side]:
            text = e["text"] if isinstance(e, dict) else str(e)
            con.print(f"input injected at tick {fd['tick'] - 1:,} in {name}: {escape(text)}")
    from aero.traces.diff import MAIN_REGS

    regs = Table(title=f"registers at tick {fd['tick']:,}")
    regs.add_column("register")
    regs.add_column(names[0], justify="right")
    regs.add_column(names[1], justify="right")
    shown = [k for k in fd["all_registers"] if k in MAIN_REGS or k in fd["registers"]]
    for k in shown:
        v = fd["all_registers"][k]
        style = "bold red" if k in fd["registers"] else ""
        regs.add_row(k, f"[{style}]{v['a']:08x}[/]" if style else f"{v['a']:08x}",
                     f"[{style}]{v['b']:08x}[/]" if style else f"{v['b']:08x}")
    con.print(regs)
    if fd.get("hidden_cpu_state"):
        con.print("CPU state outside the architectural registers differs")
    mem = fd["memory"]
    if mem["rows"]:
        con.print(f"[bold]memory[/bold]: {len(mem['pages'])} page(s) differ, "
                  f"{mem['differing_rows']} 16-byte row(s)")
        for row in mem["rows"]:
            con.print(f"  {row['address']:08x}  {names[0]}: "
                      f"{_hexrow(row['a'], row['b'], 'bold red')}")
            con.print(f"  {'':8}  {names[1]}: {_hexrow(row['b'], row['a'], 'bold red')}")
        if mem["truncated"]:
            con.print(f"  ... ({mem['differing_rows'] - len(mem['rows'])} more rows)")
    else:
        con.print("memory: identical")
    if fd["devices"]:
        for dev, fields in fd["devices"].items():
            for f, (x, y) in fields.items():
                con.print(f"device [bold]{dev}[/bold].{f}: {escape(str(x))} -> "
                          f"{escape(str(y))}")
    else:
        con.print("devices: identical")


def _print_stream(report: dict) -> None:
    from rich.markup import escape

    con = console()
    s = report.get("stream")
    if s:
        con.print(f"first stream difference: [bold]{s['stream']}[/bold] at tick {s['tick']:,}: "
                  f"A has {escape(str(s['a']))}, B has {escape(str(s['b']))}")
    for k, (x, y) in report.get("config", {}).items():
        con.print(f"configuration {k}: {x} / {y}")


# ---- diff -----------------------------------------------------------------------------------

def add_diff(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="the first tick and instruction where two traces differ")
    add_trace_argument(p, optional=False, name="a", help="trace A (a file or 'latest')")
    add_trace_argument(p, optional=False, name="b", help="trace B (a file or 'latest')")
    p.add_argument("--chunk", type=integer("tick count", lo=1), default=None, metavar="TICKS",
                   help="ticks between fingerprint comparisons before bisecting (default: the "
                        "checkpoint interval, at most 10,000,000)")
    mark_path(p.add_argument("--symbols", metavar="FILE",
                             help="name instruction addresses as symbol+offset from this "
                                  "System.map or /proc/kallsyms listing (default for a Linux "
                                  "kernel: the kernel's own kallsyms table, read from its "
                                  "image)"))
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_options(p)
    p.set_defaults(func=cmd_diff)


def kernel_symbols(path: Path, symbols: str | None):  # noqa: ANN201 - SymbolTable | None
    """The symbol table for the instructions of ``path``'s report: the ``symbols`` file when
    given (an unreadable one is an error), else, for a Linux guest whose kernel image is
    packed in the trace or in the image store, the kernel's own kallsyms table; else None."""
    from aero.symbols import SymbolError, kallsyms_from_bzimage, load_symbol_file
    from aero.traces.diff import DiffError, open_contents
    from aero.traces.replay import ReplayError, guest_image

    if symbols is not None:
        try:
            return load_symbol_file(symbols)
        except SymbolError as exc:
            raise CliError(str(exc)) from None
    try:
        c = open_contents(path)
        if c.guest.fmt != "linux":
            return None
        return kallsyms_from_bzimage(guest_image(c))
    except (DiffError, ReplayError, SymbolError):
        return None


def annotate_symbols(report: dict, table) -> None:  # noqa: ANN001 - a SymbolTable
    """Add ``symbol`` (``name+0xoff``) to every instruction of a diff report that lies in a
    text symbol of ``table``."""
    fd = report.get("first_divergence")
    for step in (fd, (fd or {}).get("consumed")):
        for ins in ((step or {}).get("instruction") or {}).values():
            if ins is not None:
                name = table.describe(ins["linear"])
                if name is not None:
                    ins["symbol"] = name


def cmd_diff(args: argparse.Namespace) -> int:
    from aero.traces.diff import DiffError, diff_traces

    table = kernel_symbols(args.a, args.symbols)
    try:
        with progress(args, "diffing: aligning the streams, then narrowing to the tick"):
            report = diff_traces(args.a, args.b, chunk=args.chunk)
    except DiffError as exc:
        raise CliError(str(exc)) from None
    if table is not None:
        annotate_symbols(report, table)
    if args.json:
        print(json.dumps(report))
    elif report["identical"]:
        print(f"aero: identical ({report['ticks'][0]:,} ticks)")
    else:
        _print_stream(report)
        fd = report["first_divergence"]
        if fd is None:
            print("aero: the streams differ but no state difference was found up to the end")
        else:
            print_divergence(fd, ("A", "B"), "first divergent state")
            if fd.get("consumed"):
                print_divergence(fd["consumed"], ("A", "B"),
                                 "the guest first sees the difference")
    return EXIT_OK if report["identical"] else EXIT_FAIL


# ---- bisect ---------------------------------------------------------------------------------

def add_bisect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bisect", help="find what another configuration, build or input set "
                                      "changes in a trace")
    bsub = p.add_subparsers(dest="what", required=True, metavar="config|build|inputs")
    c = bsub.add_parser("config", help="replay under another machine configuration")
    add_trace_argument(c)
    c.add_argument("--set", dest="settings", action="append", required=True,
                   metavar="KEY=VALUE", help="a machine configuration field (repeatable)")
    c.add_argument("--linear", action="store_true",
                   help="check keyframe intervals in order instead of binary search")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_options(c)
    c.set_defaults(func=cmd_bisect_config)
    b = bsub.add_parser("build", help="have another aero installation replay the trace")
    add_trace_argument(b)
    b.add_argument("--other", required=True, metavar="COMMAND",
                   help="the other installation as a command prefix, e.g. "
                        "'/opt/aero-old/bin/python -m aero.cli'")
    b.add_argument("--linear", action="store_true",
                   help="check keyframe intervals in order instead of binary search")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_options(b)
    b.set_defaults(func=cmd_bisect_build)
    i = bsub.add_parser("inputs", help="the smallest set of input events on which an oracle "
                                       "still fails (ddmin)")
    add_trace_argument(i)
    i.add_argument("--oracle", required=True,
                   help="output-contains:TEXT, exit-status:N, or an aero.oracles name")
    mark_path(i.add_argument("-o", "--output", required=True, type=output_file("trace"),
                             help="the minimal trace to write (not '-')"))
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_options(i)
    i.set_defaults(func=cmd_bisect_inputs)


def _bisect_result(report: dict, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(report))
    else:
        print(f"aero: {report['probes']} interval probe(s) over {report['intervals']} keyframe "
              f"interval(s) ({report['search']} search)")
        _print_stream(report)
        if report["identical"]:
            print("aero: no difference (every probed interval reproduces the trace)")
        else:
            iv = report["interval"]
            print(f"aero: first differing keyframe interval: ticks {iv['start']:,} .. "
                  f"{iv['end']:,}")
            print_divergence(report["first_divergence"], ("trace", "other"),
                             "first divergent state")
    return EXIT_OK if report["identical"] else EXIT_FAIL


def cmd_bisect_config(args: argparse.Namespace) -> int:
    from aero.traces.bisect import bisect_config
    from aero.traces.diff import DiffError

    try:
        with progress(args, "bisecting over keyframes"):
            report = bisect_config(trace_path(args.trace), args.settings, linear=args.linear)
    except DiffError as exc:
        raise CliError(str(exc)) from None
    return _bisect_result(report, args)


def cmd_bisect_build(args: argparse.Namespace) -> int:
    from aero.traces.bisect import bisect_build
    from aero.traces.diff import DiffError

    try:
        prefix = shlex.split(args.other)
    except ValueError as exc:
        raise CliError(f"--other: {exc}") from None
    if not prefix:
        raise CliError("--other needs a command")
    try:
        with progress(args, "bisecting over keyframes (asking the other build)"):
            report = bisect_build(trace_path(args.trace), prefix, linear=args.linear)
    except DiffError as exc:
        raise CliError(str(exc)) from None
    return _bisect_result(report, args)


def cmd_bisect_inputs(args: argparse.Namespace) -> int:
    from aero.oracles import failure_predicate
    from aero.traces.bisect import minimize_inputs
    from aero.traces.container import TraceError
    from aero.traces.diff import DiffError

    try:
        with progress(args, "minimising the inputs (each test replays a candidate)"):
            report = minimize_inputs(trace_path(args.trace), failure_predicate(args.oracle),
                                     Path(args.output))
    except (DiffError, TraceError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{args.output}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(report))
    else:
        print(f"aero: kept {report['kept']} of {report['inputs']} input events "
              f"({report['tests']} tests); wrote {report['output']} "
              f"({'replays cleanly' if report['replays_cleanly'] else 'DOES NOT REPLAY'}, "
              f"{'still fails' if report['still_fails'] else 'no longer fails'})")
        from aero.events import describe

        for e in report["kept_events"]:
            print(describe(e["tick"], e["kind"], e["a"], e["b"]))
    return EXIT_OK if report["replays_cleanly"] and report["still_fails"] else EXIT_FAIL


# ---- fingerprints (asked of another installation by `aero bisect build`) --------------------

def add_fingerprints(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fingerprints", help="state fingerprints at given ticks of a trace "
                                             "(what aero bisect build asks of another build)",
                       description="State fingerprints at ticks of a trace, each reached from "
                                   "the latest keyframe strictly before it (used by aero "
                                   "bisect build)")
    add_trace_argument(p)
    p.add_argument("--at", type=tick_list, required=True, metavar="T1,T2,...",
                   help="the ticks, comma-separated")
    mark_path(p.add_argument("--save-dir", type=existing_dir, metavar="DIR",
                             help="also write <tick>.aerosnap snapshot files here"), "dir")
    p.add_argument("--json", action="store_true", help="print the fingerprints as JSON")
    p.set_defaults(func=cmd_fingerprints)


def cmd_fingerprints(args: argparse.Namespace) -> int:
    from aero.traces.bisect import fingerprints_at
    from aero.traces.diff import DiffError, open_contents

    try:
        c = open_contents(trace_path(args.trace))
        if any(t > c.end_tick for t in args.at):
            raise CliError(f"ticks must be within 0..{c.end_tick}")
        rows = fingerprints_at(c, args.at, save_dir=args.save_dir)
    except DiffError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({"fingerprints": rows}))
    else:
        for r in rows:
            print(f"{r['tick']} {r['reached']} {r['fingerprint']}", file=sys.stdout)
    return EXIT_OK


COMMANDS = (add_diff, add_bisect, add_fingerprints)
