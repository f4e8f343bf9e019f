"""Progress reports on stderr for long work, usable from every layer (no CLI import).

The rules, the same for every command (docs/cli.md, "Progress"):

* ``mode="auto"``: a rich progress bar when the stream is a terminal; otherwise one plain
  line every ``interval`` seconds (default 5 s, ``$AERO_PROGRESS_INTERVAL`` overrides it),
  so a log or a CI job shows that work goes on. Work that ends before the first interval
  prints nothing.
* ``mode="plain"``: the plain lines even on a terminal.
* ``mode="off"``: nothing at all.

The ``aero`` command picks the mode: ``--no-progress`` is off, ``--json`` is off unless
``--progress`` is also given, and otherwise auto.

A :class:`Progress` is a context manager; :meth:`Progress.update` records how far the work
is (an absolute count), :meth:`Progress.advance` adds to it and :meth:`Progress.note`
replaces the description. The plain lines come from a daemon thread that reads those
values, so work without callbacks (an indeterminate total) still shows a line with the
elapsed time. Invariant: nothing is written to the stream after ``__exit__`` returns.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["MODES", "Progress", "default_interval"]

MODES = ("auto", "plain", "off")
DEFAULT_INTERVAL = 5.0


def default_interval() -> float:
    """Seconds between plain lines: ``$AERO_PROGRESS_INTERVAL`` when it is a positive
    number, else 5."""
    try:
        value = float(os.environ.get("AERO_PROGRESS_INTERVAL", ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if 0 < value < 1e6 else DEFAULT_INTERVAL


class Progress:
    """How far a long piece of work is, shown on ``stream`` (default: stderr)."""

    def __init__(self, description: str, total: int | None = None, *, unit: str = "",
                 mode: str = "auto", stream: TextIO | None = None,
                 interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode is one of {', '.join(MODES)}, not {mode!r}")
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = default_interval() if interval is None else interval
        self._clock = clock
        self._start = clock()
        self._lines = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rich = None
        self._task = None
        if mode == "auto":
            mode = "bar" if _isatty(self.stream) else "plain"
        self.mode = mode

    # ---- what callers report ----------------------------------------------------------------

    def update(self, completed: int) -> None:
        """The work done so far (in ``unit``), an absolute count."""
        self.completed = completed
        if self._rich is not None:
            self._rich.update(self._task, completed=completed)

    def set_total(self, total: int | None) -> None:
        """The amount of work once it is known (None: indeterminate)."""
        self.total = total
        if self._rich is not None:
            self._rich.update(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.update(self.completed + n)

    def note(self, description: str) -> None:
        """Replace the description (e.g. the stage a multi-part job is in)."""
        self.description = description
        if self._rich is not None:
            self._rich.update(self._task, description=description)

    # ---- the plain line ---------------------------------------------------------------------

    def line(self) -> str:
        """The plain progress line for the current state."""
        elapsed = self._clock() - self._start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            pct = min(100.0, 100.0 * self.completed / self.total)
            done = f"{self.completed:,} of {self.total:,}{unit} ({pct:.0f}%)"
        elif self.completed:
            done = f"{self.completed:,}{unit}"
        else:
            done = "working"
        return f"aero: {self.description}: {done}, {elapsed:.0f} s"

    def emit(self) -> None:
        """Write one plain line now (the thread calls this every ``interval`` seconds); only
        in plain mode, and never after the end."""
        with self._lock:
            if self.mode != "plain" or self._stop.is_set():
                return
            try:
                print(self.line(), file=self.stream, flush=True)
            except (OSError, ValueError):  # a closed or broken stderr: stop reporting
                self._stop.set()
                return
            self._lines += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.emit()

    # ---- context manager --------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self._start = self._clock()
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            unit = f" {self.unit}" if self.unit else ""
            columns = [TextColumn("{task.description}"), BarColumn(),
                       TextColumn("{task.completed:,.0f}" + unit), TimeElapsedColumn()]
            self._rich = RichProgress(*columns, console=Console(file=self.stream),
                                      transient=True)
            self._rich.__enter__()
            self._task = self._rich.add_task(self.description, total=self.total,
                                             completed=self.completed)
        elif self.mode == "plain":
            self._thread = threading.Thread(target=self._run, name="aero-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(None, None, None)
            self._rich = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        with self._lock:
            self._stop.set()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
