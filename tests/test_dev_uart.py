"""The 16550A UARTs (COM1 at 3F8h on IRQ 4, COM2 at 2F8h on IRQ 3).

Expected ticks are computed here with exact integer math from ``MachineConfig.tick_hz`` and
the 1.8432 MHz baud clock: a character of ``half_bits`` half bit-times takes
``half_bits * 8 * divisor`` clock cycles. A byte leaves the machine (an OUTPUT event) when it
enters the shift register; back-to-back characters are chained in clock cycles.
"""

from __future__ import annotations

import numpy as np
import pytest

from aero.events import EVENT_DTYPE, Channel, Device, Kind
from aero.machine import Machine, MachineConfig, Segment

UART_HZ = 1_843_200
COM1, COM2 = 0x3F8, 0x2F8
RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)
DR, OE, THRE, TEMT = 0x01, 0x02, 0x20, 0x40
IIR_NONE, IIR_MS, IIR_THRE, IIR_RDA, IIR_RLS, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IDLE = 0x1000  # sti; hlt; jmp back: time passes at no cost, the PIC masks everything


def char_cycles(lcr: int, divisor: int) -> int:
    divisor = divisor or 65536
    data = 5 + (lcr & 3)
    parity = (lcr >> 3) & 1
    stop_half = 2 if not lcr & 4 else (3 if data == 5 else 4)
    return (2 * (1 + data + parity) + stop_half) * 8 * divisor


def clock_at(m: Machine, tick: int) -> int:
    return tick * UART_HZ // m.config.tick_hz


def tick_of(m: Machine, cycles: int) -> int:
    return -(-cycles * m.config.tick_hz // UART_HZ)


def real_mode(m: Machine, ip: int, sp: int = 0x8000) -> None:
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
    r.eip, r.esp = ip, sp
    r.halted = False
    m.set_regs(r)


def idle_machine(config: MachineConfig | None = None) -> Machine:
    """A machine whose CPU sleeps in HLT with every PIC line masked: only the devices act."""
    m = Machine(config or MachineConfig(ram_size=1 << 20))
    m.write(IDLE, bytes([0xFB, 0xF4, 0xEB, 0xFD]))  # sti; hlt; jmp hlt
    real_mode(m, IDLE)
    m.port_write(0x21, 0xFF)
    m.port_write(0xA1, 0xFF)
    m.take_events()
    return m


def setup(m: Machine, base: int = COM1, lcr: int = 0x03, divisor: int = 1,
          fcr: int = 0, ier: int = 0, mcr: int = 0) -> int:
    """Program a UART; the character time in clock cycles."""
    m.port_write(base + LCR, 0x80)
    m.port_write(base + RBR, divisor & 0xFF)
    m.port_write(base + IER, divisor >> 8)
    m.port_write(base + LCR, lcr)
    m.port_write(base + IIR, fcr)
    m.port_write(base + MCR, mcr)
    m.port_write(base + IER, ier)
    return char_cycles(lcr, divisor)


def outputs(events: np.ndarray) -> list[tuple[int, int, int]]:
    return [(int(e["tick"]), int(e["a"]), int(e["b"])) for e in events if e["kind"] == Kind.OUTPUT]


def irqs(events: np.ndarray) -> list[tuple[int, int, int]]:
    return [(int(e["tick"]), int(e["a"]), int(e["b"])) for e in events if e["kind"] == Kind.IRQ]


# ---- transmit timing -------------------------------------------------------------------

def test_back_to_back_writes_leave_one_character_time_apart() -> None:
    m = idle_machine()
    c = setup(m, fcr=0x01)
    m.run(12_345)
    t0 = m.ticks
    for byte in b"ABCD":
        m.port_write(COM1, byte)
    m.run(t0 + 10 * tick_of(m, c))
    start = clock_at(m, t0)
    want = [(t0, Channel.COM1, ord("A"))] + [
        (tick_of(m, start + n * c), Channel.COM1, b) for n, b in enumerate(b"BCD", 1)]
    events = m.take_events()
    assert outputs(events) == want
    # Each shift-register completion is a UART0 deadline.
    timers = [int(e["tick"]) for e in events if e["kind"] == Kind.TIMER]
    assert timers == [tick_of(m, start + n * c) for n in range(1, 5)]
    assert all(e["a"] == Device.UART0 for e in events if e["kind"] == Kind.TIMER)
    assert m.next_deadline is None


def test_thre_and_temt_around_writes() -> None:
    m = idle_machine()
    c = setup(m, divisor=3)  # FIFOs off: THR holds one byte
    m.run(1000)
    assert m.port_read(COM1 + LSR) == THRE | TEMT
    m.port_write(COM1, 0x55)
    # The byte went straight to the shift register: THR empty, the transmitter busy.
    assert m.port_read(COM1 + LSR) == THRE
    m.port_write(COM1, 0x66)
    assert m.port_read(COM1 + LSR) == 0
    m.port_write(COM1, 0x77)  # THR full: the byte is lost
    end1 = tick_of(m, clock_at(m, 1000) + c)
    end2 = tick_of(m, clock_at(m, 1000) + 2 * c)
    m.run(end1 - 1)
    assert m.port_read(COM1 + LSR) == 0
    m.run(end1)
    assert m.port_read(COM1 + LSR) == THRE
    m.run(end2 - 1)
    assert m.port_read(COM1 + LSR) == THRE
    m.run(end2)
    assert m.port_read(COM1 + LSR) == THRE | TEMT
    assert [b for _, _, b in outputs(m.take_events())] == [0x55, 0x66]


@pytest.mark.parametrize(("lcr", "divisor"), [
    (0x03, 1),     # 8N1, 115200 baud: 10 bits
    (0x03, 12),    # 8N1, 9600 baud
    (0x07, 3),     # 8N2: 11 bits
    (0x1B, 2),     # 8E1: 11 bits
    (0x04, 5),     # 5 data bits, 1.5 stop bits: 7.5 bits
    (0x00, 0),     # 5N1, divisor 0 counts as 65536
    (0x0E, 0x180), # 7O2, divisor in both latch bytes
])
@pytest.mark.parametrize("tick_hz", [100_000_000, 1_000_003])
def test_character_time_follows_divisor_and_lcr(lcr: int, divisor: int, tick_hz: int) -> None:
    m = idle_machine(MachineConfig(ram_size=1 << 20, tick_hz=tick_hz))
    c = setup(m, lcr=lcr, divisor=divisor, fcr=0x01)
    m.run(777)
    m.port_write(COM1, 1)
    m.port_write(COM1, 2)
    m.port_write(COM1, 3)
    start = clock_at(m, 777)
    m.run(tick_of(m, start + 3 * c))
    assert [t for t, _, _ in outputs(m.take_events())] == [
        777, tick_of(m, start + c), tick_of(m, start + 2 * c)]
    assert m.port_read(COM1 + LSR) == THRE | TEMT


def test_lcr_change_applies_to_the_next_character() -> None:
    m = idle_machine()
    c8 = setup(m, fcr=0x01)
    m.run(500)
    m.port_write(COM1, 0x31)
    m.port_write(COM1, 0x32)
    m.port_write(COM1, 0x33)
    m.port_write(COM1 + LCR, 0x07)  # 8N2 from now on: the character in flight keeps 8N1
    c11 = char_cycles(0x07, 1)
    start = clock_at(m, 500)
    m.run(1_000_000)
    assert [t for t, _, _ in outputs(m.take_events())] == [
        500, tick_of(m, start + c8), tick_of(m, start + c8 + c11)]


# ---- receive ---------------------------------------------------------------------------

def test_receive_without_fifo_and_overrun_replaces_rbr() -> None:
    m = idle_machine()
    setup(m, ier=0x01)
    assert m.port_read(COM1 + IIR) == IIR_NONE
    m.inject(Kind.SERIAL_RX, 0, 0x41)
    assert m.port_read(COM1 + LSR) & (DR | OE) == DR
    assert m.port_read(COM1 + IIR) == IIR_RDA
    assert m.port_read(COM1) == 0x41
    assert m.port_read(COM1 + LSR) & DR == 0
    assert m.port_read(COM1 + IIR) == IIR_NONE
    assert m.port_read(COM1) == 0x41  # RBR keeps the last byte
    m.inject(Kind.SERIAL_RX, 0, 0x42)
    m.inject(Kind.SERIAL_RX, 0, 0x43)
    assert m.port_read(COM1 + LSR) & (DR | OE) == DR | OE
    assert m.port_read(COM1 + LSR) & OE == 0  # reading LSR cleared OE
    assert m.port_read(COM1) == 0x43
    assert m.next_deadline is None  # no character timeout without FIFOs


@pytest.mark.parametrize(("fcr", "level"), [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)])
def test_fifo_trigger_levels(fcr: int, level: int) -> None:
    m = idle_machine()
    setup(m, fcr=fcr, ier=0x01)
    data = bytes(range(0x60, 0x60 + level))
    for b in data[:-1]:
        m.inject(Kind.SERIAL_RX, 0, b)
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_NONE
    m.inject(Kind.SERIAL_RX, 0, data[-1])
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_RDA
    got = bytes(m.port_read(COM1) for _ in range(level))
    assert got == data
    assert m.port_read(COM1 + LSR) & DR == 0
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_NONE


def test_character_timeout_after_four_character_times() -> None:
    m = idle_machine()
    c = setup(m, lcr=0x03, divisor=2, fcr=0x81, ier=0x01)  # trigger level 8
    m.run(1000)
    m.inject(Kind.SERIAL_RX, 0, 0x10)
    m.run(3000)
    m.inject(Kind.SERIAL_RX, 0, 0x11)
    m.inject(Kind.SERIAL_RX, 0, 0x12)
    timeout = tick_of(m, clock_at(m, 3000) + 4 * c)
    assert m.next_deadline == timeout
    m.run(timeout - 1)
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_NONE
    m.run(timeout)
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_CTI
    m.inject(Kind.SERIAL_RX, 0, 0x13)  # a new byte leaves the pending timeout pending
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_CTI
    assert m.next_deadline is None  # and arms no timer: only an RBR read restarts it
    m.run(timeout + 100)
    assert m.port_read(COM1) == 0x10  # a read clears it and restarts the timer
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_NONE
    again = tick_of(m, clock_at(m, timeout + 100) + 4 * c)
    assert m.next_deadline == again
    m.run(again)
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_CTI
    assert bytes(m.port_read(COM1) for _ in range(3)) == b"\x11\x12\x13"
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_NONE
    assert m.next_deadline is None  # empty FIFO: no timeout armed


def test_fifo_overrun_keeps_the_fifo_and_drops_the_new_byte() -> None:
    m = idle_machine()
    setup(m, fcr=0xC1, ier=0x05)
    for b in range(17):
        m.inject(Kind.SERIAL_RX, 0, 0x80 + b)
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_RLS
    lsr = m.port_read(COM1 + LSR)
    assert lsr & (DR | OE) == DR | OE
    assert lsr & 0x80 == 0  # an overrun is not an error in the FIFO
    assert m.port_read(COM1 + LSR) & OE == 0
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_RDA
    assert bytes(m.port_read(COM1) for _ in range(16)) == bytes(range(0x80, 0x90))
    assert m.port_read(COM1 + LSR) & DR == 0


def test_fcr_resets_and_disable_clear_the_fifos() -> None:
    m = idle_machine()
    setup(m, fcr=0x01)
    m.inject(Kind.SERIAL_RX, 0, 1)
    m.inject(Kind.SERIAL_RX, 0, 2)
    m.port_write(COM1 + IIR, 0x03)  # RX FIFO reset
    assert m.port_read(COM1 + LSR) & DR == 0
    m.inject(Kind.SERIAL_RX, 0, 3)
    m.port_write(COM1 + IIR, 0x00)  # FIFOs off: cleared
    assert m.port_read(COM1 + LSR) & DR == 0
    assert m.port_read(COM1 + IIR) == IIR_NONE  # bits 7:6 clear without FIFOs


# ---- interrupts ------------------------------------------------------------------------

def test_iir_priority_order() -> None:
    m = idle_machine()
    setup(m, ier=0x0F)  # FIFOs off, all sources enabled
    m.port_write(COM1 + MCR, 0x10)  # loopback on and off: CTS, DSR, DCD drop and return
    m.port_write(COM1 + MCR, 0x00)
    m.inject(Kind.SERIAL_RX, 0, 0x21)
    m.inject(Kind.SERIAL_RX, 0, 0x22)  # overrun
    assert m.port_read(COM1 + IIR) == IIR_RLS
    m.port_read(COM1 + LSR)
    assert m.port_read(COM1 + IIR) == IIR_RDA
    assert m.port_read(COM1) == 0x22
    assert m.port_read(COM1 + IIR) == IIR_THRE  # this read clears THRE
    assert m.port_read(COM1 + IIR) == IIR_MS
    assert m.port_read(COM1 + MSR) == 0xB0 | 0x0B  # DCTS, DDSR, DDCD
    assert m.port_read(COM1 + MSR) == 0xB0
    assert m.port_read(COM1 + IIR) == IIR_NONE


def test_thre_interrupt_cleared_by_thr_write_and_raised_when_empty() -> None:
    m = idle_machine()
    c = setup(m)
    assert m.port_read(COM1 + IIR) == IIR_NONE
    m.port_write(COM1 + IER, 0x02)  # enabling it with THR empty raises it
    assert m.port_read(COM1 + IIR) == IIR_THRE
    assert m.port_read(COM1 + IIR) == IIR_NONE
    m.port_write(COM1 + IER, 0x00)
    m.port_write(COM1 + IER, 0x02)
    m.run(2000)
    m.port_write(COM1, 0x41)  # into the shift register at once: THR empty again
    assert m.port_read(COM1 + IIR) == IIR_THRE
    m.port_write(COM1, 0x42)  # THR full: the write cleared it
    assert m.port_read(COM1 + IIR) == IIR_NONE
    end = tick_of(m, clock_at(m, 2000) + c)
    m.run(end - 1)
    assert m.port_read(COM1 + IIR) == IIR_NONE
    m.run(end)
    assert m.port_read(COM1 + IIR) == IIR_THRE


def test_irq4_follows_out2() -> None:
    m = idle_machine()
    setup(m, ier=0x01)
    m.run(100)
    m.inject(Kind.SERIAL_RX, 0, 0x55)  # OUT2 low: no IRQ
    m.run(200)
    m.port_write(COM1 + MCR, 0x08)
    m.run(300)
    m.port_write(COM1 + MCR, 0x0B)  # DTR, RTS: the level does not change
    m.port_write(COM1 + MCR, 0x03)
    m.run(400)
    m.port_write(COM1 + MCR, 0x08)
    m.run(500)
    m.port_read(COM1)
    assert irqs(m.take_events()) == [(200, 4, 1), (300, 4, 0), (400, 4, 1), (500, 4, 0)]


def test_com2_uses_irq3_and_its_own_channel() -> None:
    m = idle_machine()
    c = setup(m, base=COM2, fcr=0x01, ier=0x03, mcr=0x08)
    m.run(1000)
    m.port_write(COM2, 0x61)
    m.port_write(COM2, 0x62)
    m.inject(Kind.SERIAL_RX, 1, 0x70)
    assert m.port_read(COM2) == 0x70
    assert m.port_read(COM1 + LSR) == THRE | TEMT  # COM1 untouched
    end = tick_of(m, clock_at(m, 1000) + 2 * c)
    m.run(end)
    events = m.take_events()
    assert outputs(events) == [(1000, Channel.COM2, 0x61),
                               (tick_of(m, clock_at(m, 1000) + c), Channel.COM2, 0x62)]
    assert {int(e["a"]) for e in events if e["kind"] == Kind.TIMER} == {Device.UART1}
    lines = irqs(events)
    assert lines and all(a == 3 for _, a, _ in lines)
    # THRE as soon as it is enabled (THR empty); 0x61 goes straight to the shift register,
    # so THR is empty again and the line stays up; the second write clears THRE; RDA from
    # the injected byte, cleared by reading it; THRE again when 0x62 enters the shift register.
    assert lines == [(0, 3, 1), (1000, 3, 0), (1000, 3, 1), (1000, 3, 0),
                     (tick_of(m, clock_at(m, 1000) + c), 3, 1)]


# ---- loopback --------------------------------------------------------------------------

def test_loopback_returns_bytes_and_mirrors_mcr() -> None:
    m = idle_machine()
    c = setup(m, fcr=0x01, ier=0x01, mcr=0x08)
    m.port_read(COM1 + MSR)
    m.port_write(COM1 + MCR, 0x10)  # loopback, all outputs off
    assert m.port_read(COM1 + MSR) == 0x0B  # CTS, DSR, DCD fell
    for mcr, msr in [(0x11, 0x20), (0x12, 0x10), (0x14, 0x40), (0x18, 0x80), (0x1F, 0xF0)]:
        m.port_write(COM1 + MCR, mcr)
        assert m.port_read(COM1 + MSR) & 0xF0 == msr
    m.port_write(COM1 + MCR, 0x1B)  # RI (OUT1) falls: trailing edge
    assert m.port_read(COM1 + MSR) == 0xB4
    m.take_events()
    m.run(5000)
    for b in b"xyz":
        m.port_write(COM1, b)
    m.inject(Kind.SERIAL_RX, 0, 0x99)  # the receive line is disconnected
    assert m.port_read(COM1 + LSR) & DR == 0
    first = tick_of(m, clock_at(m, 5000) + c)
    m.run(first - 1)
    assert m.port_read(COM1 + LSR) & DR == 0
    m.run(first)
    assert m.port_read(COM1 + LSR) & DR
    m.run(first + 3 * tick_of(m, c))
    # RDA is reported in IIR, but OUT2 is forced inactive in loopback: no IRQ.
    assert m.port_read(COM1 + IIR) == 0xC0 | IIR_RDA
    assert bytes(m.port_read(COM1) for _ in range(3)) == b"xyz"
    events = m.take_events()
    assert outputs(events) == []
    assert irqs(events) == []
    m.port_write(COM1 + MCR, 0x08)
    m.port_write(COM1, 0x21)
    assert outputs(m.take_events()) == [(m.ticks, Channel.COM1, 0x21)]


# ---- a guest -----------------------------------------------------------------------------

MAIN, ISR = 0x1000, 0x1100


def out_dx(port: int, value: int) -> bytes:
    return bytes([0xBA, port & 0xFF, port >> 8, 0xB0, value, 0xEE])  # mov dx; mov al; out


SPIN = bytes([0xFB, 0xEB, 0xFE])  # sti; jmp $
HALT = bytes([0xFB, 0xF4, 0xEB, 0xFD])  # sti; hlt; jmp hlt


def echo_guest(fcr: int, isr: bytes, idle: bytes = HALT) -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20))
    main = (out_dx(COM1 + LCR, 0x80) + out_dx(COM1, 1) + out_dx(COM1 + IER, 0)
            + out_dx(COM1 + LCR, 0x03) + out_dx(COM1 + IIR, fcr) + out_dx(COM1 + MCR, 0x0B)
            + out_dx(COM1 + IER, 0x01) + idle)
    m.write(MAIN, main)
    m.write(ISR, isr)
    m.write(4 * 0x0C, ISR.to_bytes(2, "little") + bytes(2))  # IRQ 4 -> vector 0Ch
    for port, value in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xEF)]:
        m.port_write(port, value)
    real_mode(m, MAIN)
    m.run(1000)
    m.take_events()
    return m


# push ax; push dx; again: mov dx,3FDh; in al,dx; test al,1; jz done;
# mov dx,3F8h; in al,dx; out dx,al; jmp again; done: mov al,20h; out 20h,al; pop dx; pop ax; iret
DRAIN_ISR = bytes([0x50, 0x52, 0xBA, 0xFD, 0x03, 0xEC, 0xA8, 0x01, 0x74, 0x07,
                   0xBA, 0xF8, 0x03, 0xEC, 0xEE, 0xEB, 0xF1,
                   0xB0, 0x20, 0xE6, 0x20, 0x5A, 0x58, 0xCF])
# As above, one byte per pass while IIR reports an interrupt (the 8250 driver's loop):
# again: mov dx,3FAh; in al,dx; test al,1; jnz done; ...
IIR_ISR = bytes([0x50, 0x52, 0xBA, 0xFA, 0x03, 0xEC, 0xA8, 0x01, 0x75, 0x07,
                 0xBA, 0xF8, 0x03, 0xEC, 0xEE, 0xEB, 0xF1,
                 0xB0, 0x20, 0xE6, 0x20, 0x5A, 0x58, 0xCF])


def test_guest_echoes_received_bytes_by_interrupt() -> None:
    m = echo_guest(0x00, DRAIN_ISR)
    sent = [(20_000, 0x68), (45_000, 0x69), (61_111, 0x21), (200_000, 0x0A)]
    for tick, byte in sent:
        m.run(tick)
        m.inject(Kind.SERIAL_RX, 0, byte)
    m.run(300_000)
    events = m.take_events()
    echoed = outputs(events)
    assert [(a, b) for _, a, b in echoed] == [(Channel.COM1, b) for _, b in sent]
    # The handler is entered at the injection tick; each echo comes the same number of
    # instructions later, and the IRQ falls at the RBR read just before it.
    delays = [t - tick for (t, _, _), (tick, _) in zip(echoed, sent, strict=True)]
    assert len(set(delays)) == 1 and 0 < delays[0] < 20
    assert [int(e["a"]) for e in events if e["kind"] == Kind.INTA] == [0x0C] * 4
    assert irqs(events)[:2] == [(20_000, 4, 1), (20_000 + delays[0] - 1, 4, 0)]


@pytest.mark.parametrize("idle", [
    pytest.param(SPIN, id="spin"),
    # While the CPU sleeps in HLT the clock skips to the next deadline, including one the
    # interrupt handler set just before halting (its THR write).
    pytest.param(HALT, id="hlt"),
])
def test_guest_fifo_echo_uses_trigger_level_and_character_timeout(idle: bytes) -> None:
    m = echo_guest(0x41, IIR_ISR, idle)  # FIFO, trigger level 4
    c = char_cycles(0x03, 1)
    m.run(50_000)
    burst = b"abcdef"
    for b in burst:
        m.inject(Kind.SERIAL_RX, 0, b)
    m.run(50_000 + 20 * tick_of(m, c))
    events = m.take_events()
    echoed = outputs(events)
    assert bytes(b for _, _, b in echoed) == burst
    t = [tick for tick, _, _ in echoed]
    # The FIFO reached its trigger level: the handler reads while IIR reports RDA, down to
    # three bytes; a leaves at once, b and c follow back to back.
    latency = t[0] - 50_000  # interrupt entry to the OUT of the echo
    assert 0 < latency < 20
    start = clock_at(m, t[0])
    assert t[1:3] == [tick_of(m, start + c), tick_of(m, start + 2 * c)]
    # d, e, f each wait for a character timeout: 4 character times after the last RBR read
    # (c's read happened before its delayed output, so d only gets bounds).
    assert tick_of(m, 4 * c) < t[3] - t[0] < tick_of(m, 4 * c) + 40
    for n in (4, 5):
        read = t[n - 1] - 1  # the IN from RBR right before the OUT of the previous echo
        assert t[n] == tick_of(m, clock_at(m, read) + 4 * c) + latency
    assert [int(e["a"]) for e in events if e["kind"] == Kind.INTA] == [0x0C] * 4


# ---- snapshots -------------------------------------------------------------------------

def test_snapshot_mid_transmission_restores_identically() -> None:
    m = idle_machine()
    c = setup(m, base=COM1, fcr=0xC1, ier=0x0F, mcr=0x0B)
    setup(m, base=COM2, lcr=0x1F, divisor=7, mcr=0x08, ier=0x02)
    m.run(3000)
    for b in b"snapshot":
        m.port_write(COM1, b)
    m.port_write(COM2, 0x55)
    m.port_write(COM2, 0x56)
    for b in b"rx":
        m.inject(Kind.SERIAL_RX, 0, b)
    m.run(3000 + 3 * tick_of(m, c) + 17)
    m.take_events()
    snap = m.snapshot()
    other = Machine(MachineConfig(ram_size=1 << 20))
    other.restore(snap)
    assert other.fingerprint() == m.fingerprint()
    assert other.next_deadline == m.next_deadline
    logs = []
    for x in (m, other):
        x.inject(Kind.SERIAL_RX, 0, 0x40)
        x.run(3000 + 6 * tick_of(m, c))
        regs = [x.port_read(COM1 + r) for r in (IIR, LSR, MSR, RBR, RBR)]
        x.run(3000 + 40 * tick_of(m, c))
        logs.append((x.take_events().tobytes(), regs, x.fingerprint()))
    assert logs[0] == logs[1]
    after = outputs(np.frombuffer(logs[0][0], dtype=EVENT_DTYPE))
    start = clock_at(m, 3000)
    com1 = [(tick_of(m, start + n * c), Channel.COM1, b) for n, b in enumerate(b"shot", 4)]
    assert after == com1 + [(tick_of(m, start + char_cycles(0x1F, 7)), Channel.COM2, 0x56)]


def test_damaged_snapshot_counts_are_clamped() -> None:
    m = idle_machine()
    setup(m, fcr=0x01)
    m.port_write(COM1 + LCR, 0x80)
    m.port_write(COM1, 0x5A)  # DLL, DLM, SCR mark where COM1's registers sit
    m.port_write(COM1 + IER, 0x00)
    m.port_write(COM1 + LCR, 0x03)
    m.port_write(COM1 + SCR, 0xA5)
    m.inject(Kind.SERIAL_RX, 0, 0x31)
    snap = bytearray(m.snapshot())
    at = snap.find(bytes([0x5A, 0x00, 0xA5]))
    assert at > 0 and snap.find(bytes([0x5A, 0x00, 0xA5]), at + 1) < 0
    fields = at - 14  # rx_head, rx_count, tx_head, tx_count, ... dll, dlm, scr
    assert snap[fields:fields + 4] == bytes([0, 1, 0, 0])
    snap[fields:fields + 4] = bytes([0xFF, 0xFF, 0xFF, 0xFF])
    other = Machine(MachineConfig(ram_size=1 << 20))
    other.restore(bytes(snap))
    # Both counts clamp to the FIFO size: 16 bytes to read, 16 to send (the write that
    # finds the FIFO full is lost but starts the idle transmitter).
    for _ in range(16):
        assert other.port_read(COM1 + LSR) & DR
        other.port_read(COM1)
    assert other.port_read(COM1 + LSR) & DR == 0
    other.take_events()
    other.port_write(COM1, 0x41)
    c = char_cycles(0x03, 0x5A)
    other.run(other.ticks + tick_of(other, 17 * c))
    assert other.port_read(COM1 + LSR) == THRE | TEMT
    assert len(outputs(other.take_events())) == 16
