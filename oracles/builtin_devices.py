"""The device-state oracle: structural invariants of the PC devices' state, read from the
decoded device state (:mod:`aero.devstate`) at every checkpoint and at the end."""

from __future__ import annotations

from typing import Any

from aero.events import Kind

from .api import Context, Event, Oracle
from .registry import register

UART_FIFO = 16  # NS16550A: 16-byte receive and transmit FIFOs
KBC_FIFO = 16  # the keyboard's output buffer (aero/_core/kbc.h)
CASCADE = 2  # the master's IR2 is the slave's INT output (PC/AT wiring)
CHIPS = ("master", "slave")


def _bcd_ok(v: int) -> bool:
    return all((v >> s) & 0xF <= 9 for s in (0, 4, 8, 12))


def check_devices(d: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """The structural invariants a decoded device state breaks, as (rule, message, state).
    The PIC's acknowledgement rule needs the event history: see :class:`DeviceState`."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    if not d:
        return out
    pic = d["pic"]
    for chip in CHIPS:
        f = {k[len(chip) + 1:]: v for k, v in pic.items() if k.startswith(chip + "_")}
        if f["elcr"] & ~f["elcr_mask"] & 0xFF:
            out.append(("pic-elcr", f"PIC {chip}: ELCR selects level mode for a line that is "
                        f"edge-only", {"chip": chip, "elcr": f["elcr"],
                                       "elcr_mask": f["elcr_mask"]}))
        if f["output"] and not f["irr"] & ~f["imr"] & 0xFF:
            out.append(("pic-output", f"PIC {chip}: INT is asserted with no unmasked request",
                        {"chip": chip, "irr": f["irr"], "imr": f["imr"], "isr": f["isr"]}))
    pit = d["pit"]
    for i in range(3):
        c = {k[4:]: v for k, v in pit.items() if k.startswith(f"ch{i}_")}
        modulus = 10_000 if c["bcd"] else 65_536
        state = {"channel": i, "n": c["n"], "pend_n": c["pend_n"], "bcd": c["bcd"],
                 "mode": c["mode"], "running": c["running"], "latch": c["latch"]}
        # n is the counting element's count while a segment runs; pend_n waits to be
        # loaded while pend_at names an edge (otherwise both may be stale).
        pending = c["pend_at"] != (1 << 64) - 1
        if (c["running"] and not 1 <= c["n"] <= modulus) or \
                (pending and not 1 <= c["pend_n"] <= modulus):
            out.append(("pit-count", f"PIT channel {i}: a count outside 1..{modulus}", state))
        if c["bcd"] and c["latched"] and not _bcd_ok(c["latch"]):
            out.append(("pit-latch", f"PIT channel {i}: a latched BCD count with a digit "
                                     f"above 9", state))
        if c["rw"] > 3 or c["mode"] > 7:
            out.append(("pit-mode", f"PIT channel {i}: access mode or counter mode out of "
                                    f"range", state))
    for port in ("com1", "com2"):
        u = d[port]
        cap = UART_FIFO if u["fcr"] & 1 else 1
        state = {"uart": port, "rx_head": u["rx_head"], "rx_count": u["rx_count"],
                 "tx_head": u["tx_head"], "tx_count": u["tx_count"], "fcr": u["fcr"]}
        if u["rx_head"] >= UART_FIFO or u["tx_head"] >= UART_FIFO or \
                u["rx_count"] > cap or u["tx_count"] > cap:
            out.append(("uart-fifo", f"{port.upper()}: FIFO position or count out of bounds "
                                     f"(at most {cap} bytes with the FIFOs "
                                     f"{'on' if cap > 1 else 'off'})", state))
    rtc = d["rtc"]
    if rtc["index"] >= 128:
        out.append(("rtc-index", "RTC: register index beyond the 128 CMOS bytes",
                    {"index": rtc["index"]}))
    kbc = d["kbc"]
    if kbc["fifo_head"] >= KBC_FIFO or kbc["fifo_len"] > KBC_FIFO:
        out.append(("kbc-fifo", "keyboard: output FIFO position or length out of bounds",
                    {"fifo_head": kbc["fifo_head"], "fifo_len": kbc["fifo_len"]}))
    return out


@register
class DeviceState(Oracle):
    """Device-state invariants of the PIC, PIT, UARTs, RTC and keyboard controller.

    Checked at every checkpoint and at the end, on aero.devstate.decode(devices_state_bytes):

    * 8259A PIC (Intel 8259A datasheet, 231468): a bit of ISR is set only for a line the
      CPU acknowledged (an ``inta`` event with that line's vector; the master's cascade line
      IR2 for any slave vector) and not yet ended: an acknowledgement is spent once its ISR
      bit is seen clear. INT is asserted only while some request in IRR is unmasked
      ("the INT output goes high when an unmasked IRR bit is set"). ELCR selects level mode
      only for lines that have it (PIIX: IRQ 0, 1, 2, 8 and 13 are edge-only).
    * 8254 PIT (8254 datasheet, "counter modes"): the count of a running counter is within
      the modulus, 1..65536 in binary and 1..10000 in BCD, and so is a pending count; a
      latched BCD count has decimal digits; the access and counter modes are in range.
    * NS16550A UARTs (datasheet, "FIFO operation"): FIFO heads below 16, counts at most 16
      with the FIFOs on and at most 1 (the holding register) with them off.
    * MC146818 RTC: the register index addresses one of the 128 CMOS bytes.
    * Keyboard: the output FIFO's head and length within its 16 bytes.

    Each rule is reported when it starts to fail, not again while it keeps failing. Not
    covered: acknowledgements through the 8259A's poll command (OCW3 P = 1) are not in the
    event log, so a guest that polls its PIC has ISR bits this oracle cannot account for.
    """

    name = "devices"

    def start(self, ctx: Context) -> None:
        self._credit = {c: 0 for c in CHIPS}  # acknowledged, not yet ended, per chip
        self._failing: set[str] = set()

    def event(self, ctx: Context, event: Event) -> None:
        if event.kind != Kind.INTA:
            return
        d = ctx.devices()
        if not d:
            return
        pic, v = d["pic"], event.a
        for chip in CHIPS:
            base = pic[f"{chip}_vector_base"]
            if base <= v < base + 8:
                self._credit[chip] |= 1 << (v - base)
                if chip == "slave":
                    self._credit["master"] |= 1 << CASCADE

    def _check(self, ctx: Context) -> None:
        d = ctx.devices()
        problems = check_devices(d)
        if d:
            pic = d["pic"]
            for chip in CHIPS:
                isr = pic[f"{chip}_isr"]
                stray = isr & ~self._credit[chip] & 0xFF
                if stray:
                    problems.append(("pic-isr", f"PIC {chip}: ISR has bits for lines the CPU "
                                     f"never acknowledged", {
                                         "chip": chip, "isr": isr,
                                         "acknowledged": self._credit[chip],
                                         "unacknowledged": stray,
                                         "irr": pic[f"{chip}_irr"],
                                         "imr": pic[f"{chip}_imr"]}))
                self._credit[chip] &= isr
        failing = set()
        for rule, message, state in problems:
            key = f"{rule}:{state.get('chip', state.get('channel', state.get('uart', '')))}"
            failing.add(key)
            if key not in self._failing:
                self.violation(ctx, message, state={"rule": rule, **state})
        self._failing = failing

    def checkpoint(self, ctx: Context) -> None:
        self._check(ctx)

    def end(self, ctx: Context) -> None:
        self._check(ctx)
