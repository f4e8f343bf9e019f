"""The screen oracle: text on the VGA text screen."""

from __future__ import annotations

from .api import Context, Oracle
from .registry import register


@register
class ScreenContains(Oracle):
    """The VGA text screen shows a text at some checkpoint or at the end.

    Invariant: ``text`` appears within one line of the 80x25 text screen
    (:meth:`aero.machine.Machine.screen`: the frame buffer at B8000h from the CRTC's start
    address, code page 437) at one of the trace's checkpoints or when the replay ends;
    otherwise a violation is reported at the end. Given on the command line as
    ``screen-contains:TEXT`` (``aero check TRACE --oracle "screen-contains:Booting from"``).
    Source: what the guest's firmware, boot loader or console put on the screen, as a
    person watching it would read it.
    """

    name = "screen-contains"
    argument = "text"  # spelled screen-contains:TEXT; not in the default set

    def __init__(self, text: str = "") -> None:
        if not text:
            raise ValueError("screen-contains needs a text: screen-contains:TEXT")
        self.text = text

    @property
    def label(self) -> str:
        return f"{self.name}:{self.text}"

    def start(self, ctx: Context) -> None:
        self._seen: int | None = None

    def _look(self, ctx: Context) -> None:
        if self._seen is None and any(self.text in line for line in ctx.machine.screen()):
            self._seen = ctx.machine.ticks

    def checkpoint(self, ctx: Context) -> None:
        self._look(ctx)

    def end(self, ctx: Context) -> None:
        self._look(ctx)
        if self._seen is None:
            self.violation(ctx, f"the screen never showed {self.text!r}",
                           state={"text": self.text, "screen": ctx.machine.screen()})
