"""``aero query`` (the history of a memory range, a port or a register in a trace) and the
gdb server behind ``aero replay --gdb`` / ``aero seek --gdb``."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from aero.cli.common import (
    EXIT_OK,
    CliError,
    add_trace_argument,
    address,
    integer,
    tick,
    trace_path,
)

__all__ = ["COMMANDS", "serve_gdb"]


def serve_gdb(path: Path, address: str, tick: int) -> int:
    """Serve one gdb on the trace at ``path`` from ``tick``; a one-line error when the
    address cannot be used."""
    from aero.traces.container import TraceError, open_trace
    from aero.traces.gdbstub import parse_address, serve
    from aero.traces.replay import ReplayError, load_contents

    try:
        host, _port = parse_address(address)
    except ValueError:
        raise CliError(f"--gdb takes [HOST:]PORT, not {address!r}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"aero: warning: the gdb server listens on {host}: anyone who can reach it can "
              f"read the replay's memory", file=sys.stderr)
    try:
        c = load_contents(open_trace(path, verify=False))
        if tick > c.end_tick:
            raise CliError(f"tick {tick} is past the trace's end ({c.end_tick})")
        serve(c, address, start_tick=tick,
              log=lambda m: print(m, file=sys.stderr, flush=True))
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"cannot listen on {address}: the port is in use") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise CliError(f"cannot listen on {address}: {exc.strerror}") from None
        raise
    return EXIT_OK


def _mem(s: str) -> tuple[int, int]:
    """ADDR[:LEN]: a physical address and a length of 1 to 4096 bytes."""
    addr, _, length = s.partition(":")
    n = integer("length", lo=1, hi=4096)(length) if length else 1
    return address(addr), n


def add_query(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="the history of a memory range, port or register in a "
                                     "trace; the last write to a byte before a tick")
    add_trace_argument(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--mem", type=_mem, metavar="ADDR[:LEN]",
                      help="every change of these physical bytes")
    what.add_argument("--port", type=integer("port", hi=0xFFFF), metavar="PORT",
                      help="every IN/OUT on this port")
    what.add_argument("--reg", metavar="NAME", help="every change of this register")
    what.add_argument("--last-write", type=address, metavar="ADDR",
                      help="the instruction that last wrote this physical byte (with --before)")
    p.add_argument("--before", type=tick, metavar="TICK",
                   help="with --last-write: the last write before this tick")
    p.add_argument("--from", dest="t_from", type=tick, default=0, metavar="TICK",
                   help="the first tick of the range (default 0)")
    p.add_argument("--to", dest="t_to", type=tick, default=None, metavar="TICK",
                   help="the last tick of the range (default: the trace's end)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from aero.traces import query
    from aero.traces.container import TraceError, open_trace
    from aero.traces.replay import ReplayError, load_contents

    path = trace_path(args.trace)
    if args.last_write is not None and args.before is None:
        raise CliError("--last-write needs --before TICK")
    try:
        c = load_contents(open_trace(path, verify=False))
        if args.last_write is not None:
            found, stats = query.last_write(c, args.last_write, args.before)
            rows = [] if found is None else [found]
        elif args.mem is not None:
            rows, stats = query.memory_history(c, args.mem[0], args.mem[1], args.t_from,
                                               args.t_to)
        elif args.port is not None:
            rows, stats = query.port_history(c, args.port, args.t_from, args.t_to)
        else:
            rows, stats = query.register_history(c, args.reg, args.t_from, args.t_to)
    except query.QueryError as exc:
        raise CliError(str(exc)) from None
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({"results": [r.to_dict() for r in rows], "stats": stats.to_dict()}))
        return EXIT_OK
    if not rows:
        print("no write found before that tick" if args.last_write is not None
              else "no changes")
        if stats.executed < stats.intervals and stats.unit == "keyframe":
            print("(keyframe intervals at whose two ends the bytes were equal were skipped: "
                  "writes there that left them as they were are not seen)", file=sys.stderr)
    for r in rows:
        if isinstance(r, query.Access):
            print(f"tick {r.tick:>12,}  eip {r.eip:08x}  {r.insn:<28} {r.direction:<3} "
                  f"port {r.port:#06x} = {r.value:#0{2 + 2 * r.size}x}")
        else:
            print(f"tick {r.tick:>12,}  eip {r.eip:08x}  {r.insn:<28} {r.what}: "
                  f"{r.old} -> {r.new}")
    print(f"({stats.executed} of {stats.intervals} {stats.unit} intervals re-executed with the "
          f"watch armed ({stats.ticks_armed:,} ticks), {stats.ticks_executed:,} ticks in all "
          f"from {stats.restores} keyframe restore(s), {stats.seconds:.2f} s)", file=sys.stderr)
    return EXIT_OK


COMMANDS = (add_query,)
