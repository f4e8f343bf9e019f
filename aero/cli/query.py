"""``aero query`` (the history of a memory range, a port or a register in a trace) and the
gdb server behind ``aero replay --gdb`` / ``aero seek --gdb``."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from aero.cli.common import EXIT_OK, CliError

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


COMMANDS: tuple = ()
