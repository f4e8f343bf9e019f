"""What every ``aero`` command shares: exit codes and the user-facing error.

Exit codes, the same for every command:

* 0: success (``run`` and ``record`` exit like qemu-system-i386 when the guest wrote the
  debug-exit port: ``(value << 1) | 1``)
* 1: the check failed (test failures, divergences)
* 2: usage error or bad input (missing file, damaged data)
* 125: ``replay --check`` could not evaluate the trace (for ``git bisect run``)
"""

from __future__ import annotations

EXIT_OK, EXIT_FAIL, EXIT_ERROR, EXIT_SKIP = 0, 1, 2, 125


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def working(args: object, text: str):  # noqa: ANN201 - a context manager
    """A spinner with ``text`` on stderr while long work runs: only on a terminal, and not
    with --json or --no-progress."""
    import contextlib
    import sys

    if getattr(args, "json", False) or getattr(args, "no_progress", False) or \
            not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)
