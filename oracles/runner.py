"""Running oracles: one replay of a trace with a set of oracles attached.

:class:`OracleRunner` is the :class:`aero.traces.replay.ReplayObserver` that fans the replay's
callbacks out to the oracles (keeping the ring of recent events every violation's chain
comes from); :func:`check_trace` replays a trace with it and returns the violations.

Invariants:

* Oracles see the events in log order and the checkpoints in tick order; each hook of each
  oracle is called once per occasion, and ``event`` only on oracles that override it.
* An exception raised by an oracle ends the check with :class:`OracleError` naming the
  oracle and the hook (it is a bug in the oracle, not a property of the trace).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from aero.traces.replay import Replayer, ReplayResult, TraceContents

from aero.machine import Machine

from .api import DEFAULT_CHAIN_LENGTH, Context, Event, Oracle, OracleError, Violation


class OracleRunner:
    """A ReplayObserver that drives a list of oracles."""

    def __init__(self, oracles: Sequence[Oracle], *,
                 chain_length: int = DEFAULT_CHAIN_LENGTH) -> None:
        self.oracles = list(oracles)
        self.chain_length = chain_length
        self.per_instruction = any(o.per_instruction for o in self.oracles)
        self._on_event = [o for o in self.oracles if type(o).event is not Oracle.event]
        self._on_step = [o for o in self.oracles if o.per_instruction]
        self.ctx: Context | None = None

    @property
    def violations(self) -> list[Violation]:
        return [] if self.ctx is None else sorted(self.ctx.violations,
                                                  key=lambda v: v.tick)

    def _call(self, oracle: Oracle, hook: str, *args: object) -> None:
        try:
            getattr(oracle, hook)(self.ctx, *args)
        except OracleError:
            raise
        except Exception as exc:
            raise OracleError(f"oracle {oracle.label} failed in {hook}(): "
                              f"{type(exc).__name__}: {exc}") from exc

    # ---- ReplayObserver ---------------------------------------------------------------
    def start(self, m: Machine, contents: TraceContents) -> None:
        self.ctx = Context(m, contents, chain_length=self.chain_length)
        for o in self.oracles:
            self._call(o, "start")

    def events(self, m: Machine, events: np.ndarray) -> None:
        ctx = self.ctx
        assert ctx is not None
        ring = ctx.recent
        listeners = self._on_event
        for row in events.tolist():
            e = Event(*row)
            ring.append(e)
            if listeners:
                ctx.tick = e.tick
                for o in listeners:
                    self._call(o, "event", e)
        ctx.tick = m.ticks

    def instruction(self, m: Machine) -> None:
        assert self.ctx is not None
        self.ctx.tick = m.ticks
        for o in self._on_step:
            self._call(o, "instruction")

    def checkpoint(self, m: Machine, tick: int) -> None:
        assert self.ctx is not None
        self.ctx.tick = tick
        for o in self.oracles:
            self._call(o, "checkpoint")

    def end(self, m: Machine, result: ReplayResult) -> None:
        assert self.ctx is not None
        self.ctx.tick = m.ticks
        self.ctx.result = result
        for o in self.oracles:
            self._call(o, "end")


@dataclass
class CheckResult:
    violations: list[Violation]
    replay: ReplayResult
    oracles: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {"ok": self.ok, "oracles": self.oracles,
                "violations": [v.to_dict() for v in self.violations],
                "replay": self.replay.to_dict()}


def check_trace(contents: TraceContents, oracles: Sequence[Oracle], *,
                image: bytes | None = None, chain_length: int = DEFAULT_CHAIN_LENGTH,
                on_progress: Callable[[int], None] | None = None) -> CheckResult:
    """Replay ``contents`` from tick 0 with ``oracles`` attached (raises ReplayError when the
    trace cannot be replayed, OracleError when an oracle fails)."""
    runner = OracleRunner(oracles, chain_length=chain_length)
    result = Replayer(contents, image=image).run(observer=runner, on_progress=on_progress)
    return CheckResult(runner.violations, result, [o.label for o in runner.oracles])


def check(trace: str | os.PathLike[str], oracles: Sequence[str | Oracle] | None = None, *,
          on_progress: Callable[[int], None] | None = None) -> CheckResult:
    """Replay ``trace`` with ``oracles`` attached (oracle instances, or names such as
    ``"cpu"`` or ``"guest-output"``, or ``path.py:Class``; default: the default set) and
    return the violations found. ``result.ok`` is true when there are none. Raises
    :class:`aero.traces.container.TraceError`, :class:`aero.traces.replay.ReplayError` or
    :class:`OracleError`."""
    from aero.oracles.registry import build
    from aero.traces.container import open_trace
    from aero.traces.replay import load_contents

    if not oracles:
        chosen = build(None)
    else:
        chosen = [build([o])[0] if isinstance(o, str) else o for o in oracles]
    return check_trace(load_contents(open_trace(trace)), chosen, on_progress=on_progress)


def failure_predicate(name: str) -> Callable[[TraceContents], bool]:
    """What ``aero bisect inputs --oracle NAME`` minimises against: a built-in predicate of
    :mod:`aero.traces.bisect` (``output-contains:TEXT``, ``exit-status:N``), else an invariant
    oracle (a registered name or ``path.py:Class``), under which a candidate fails when the
    oracle reports a violation on a fresh recording of the candidate's inputs. Raises
    :class:`aero.traces.bisect.BisectError` for an unknown name."""
    from aero.oracles.registry import resolve
    from aero.traces.bisect import BisectError, builtin_oracle, record_inputs

    p = builtin_oracle(name)
    if p is not None:
        return p
    try:
        cls = resolve(name)
    except (KeyError, ValueError, OracleError) as exc:
        raise BisectError(f"unknown oracle {name!r}: {exc}") from None

    def fails(c: TraceContents) -> bool:
        import tempfile
        from pathlib import Path

        from aero.traces.container import open_trace
        from aero.traces.replay import load_contents

        with tempfile.TemporaryDirectory(prefix="aero-bisect-") as tmp:
            path = Path(tmp) / "candidate.aerotrace"
            record_inputs(c, path)
            return bool(check_trace(load_contents(open_trace(path)), [cls()]).violations)

    return fails
