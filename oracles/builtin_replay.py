"""The replay-determinism oracle."""

from __future__ import annotations

from .api import Context, Oracle
from .registry import register


@register
class ReplayDeterminism(Oracle):
    """The replay reproduced the trace: every event, output byte and checkpoint fingerprint.

    Invariant: the core is a pure function of (configuration, guest image, injected inputs)
    (docs/architecture.md, DESIGN §1), so re-executing a trace's inputs at their ticks
    produces exactly the device events, output and state fingerprints it recorded. The
    replay engine (aero.traces.replay) verifies that as it goes; this oracle turns its first
    divergence into a violation at the divergence tick, with what differed.
    """

    name = "replay-determinism"

    def end(self, ctx: Context) -> None:
        r = ctx.result
        if r is None or r.divergence is None:
            return
        d = r.divergence
        self.violation(ctx, f"the replay diverged from the trace ({d.what}): {d.detail}",
                       tick=d.tick, state={"what": d.what, "detail": d.detail,
                                           "replay_stopped_at": r.ticks,
                                           "events_verified": r.events_verified,
                                           "checkpoints_verified": r.checkpoints_verified})
