"""The 8254 PIT and port 61h: modes, latches, read-back, BCD, gates, IRQ 0 timing, snapshots.

Expected values are computed here with exact integer math from the PIT's 1,193,182 Hz clock
and MachineConfig.tick_hz: PIT clock edge k happens at the first tick t with
t * PIT_HZ // tick_hz >= k, and a count written between edges c and c+1 is loaded on edge c+1.
"""

from __future__ import annotations

import numpy as np
import pytest

from aero.events import Kind
from aero.machine import Machine, MachineConfig, Segment

PIT_HZ = 1_193_182
REAL_CS = 0x9B
REAL_DS = 0x93


def clock(cfg: MachineConfig, tick: int) -> int:
    """PIT clock edges completed by this tick."""
    return tick * PIT_HZ // cfg.tick_hz


def tick_of(cfg: MachineConfig, edge: int) -> int:
    """The tick at which PIT clock edge `edge` happens."""
    return -(-edge * cfg.tick_hz // PIT_HZ)


def idle_machine(tick_hz: int = 100_000_000) -> Machine:
    """A machine whose CPU sleeps in HLT with IF = 1 and every PIC input masked: the clock
    skips from deadline to deadline and IRQ line changes are still logged."""
    m = Machine(MachineConfig(ram_size=1 << 20, tick_hz=tick_hz))
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, REAL_CS)
    r.eip, r.eflags, r.halted = 0x1000, 0x202, True
    m.set_regs(r)
    m.write(0x1000, bytes([0xF4, 0xEB, 0xFD]))  # hlt; jmp $-1
    m.port_write(0x21, 0xFF)
    m.port_write(0xA1, 0xFF)
    return m


def program(m: Machine, channel: int, mode: int, count: int, bcd: bool = False) -> int:
    """Control word (LSB then MSB) and a 16-bit count; returns the load edge."""
    m.port_write(0x43, channel << 6 | 0x30 | mode << 1 | int(bcd))
    m.port_write(0x40 + channel, count & 0xFF)
    m.port_write(0x40 + channel, count >> 8)
    return clock(m.config, m.ticks) + 1


def irq0(events: np.ndarray, level: int | None = None) -> list[int]:
    """Ticks of IRQ 0 line changes (to `level` if given)."""
    sel = (events["kind"] == Kind.IRQ) & (events["a"] == 0)
    if level is not None:
        sel &= events["b"] == level
    return [int(t) for t in events["tick"][sel]]


def run_to(m: Machine, tick: int) -> None:
    m.run(tick)
    assert m.ticks == tick


def read_count(m: Machine, channel: int) -> int:
    lo = m.port_read(0x40 + channel)
    return lo | m.port_read(0x40 + channel) << 8


def latched_count(m: Machine, channel: int) -> int:
    m.port_write(0x43, channel << 6)
    return read_count(m, channel)


# ---- channel 0 modes and IRQ 0 ----------------------------------------------------------

# (tick_hz, mode, count): guest clocks finer and coarser than the PIT's; the period stays
# above one tick so that every pulse has its own tick.
MODE2_CASES = [(100_000_000, 2, 1000), (100_000_000, 6, 4321), (100_000_000, 2, 2),
               (1_000_000, 2, 1000), (1_000_000, 2, 2), (1_000, 2, 5000), (1_000, 6, 1300)]


@pytest.mark.parametrize(("tick_hz", "mode", "n"), MODE2_CASES)
def test_mode2_irq0_edges(tick_hz: int, mode: int, n: int) -> None:
    m = idle_machine(tick_hz)
    cfg = m.config
    run_to(m, 12_345 * tick_hz // 100_000_000 + 7)
    t0 = m.ticks
    load = program(m, 0, mode, n)
    ev = m.take_events()
    # The control word sets OUT high at once (it was low since reset).
    assert irq0(ev) == [t0] and irq0(ev, 1) == [t0]
    periods = 6
    end = tick_of(cfg, load + periods * n)
    run_to(m, end)
    ev = m.take_events()
    rises = [tick_of(cfg, load + k * n) for k in range(1, periods + 1)]
    falls = [tick_of(cfg, load + k * n - 1) for k in range(1, periods + 1)]
    assert irq0(ev, 1) == rises
    assert irq0(ev, 0) == falls
    # Every line change follows the PIT's timer, which alone fires.
    timers = ev[ev["kind"] == Kind.TIMER]
    assert set(timers["a"].tolist()) == {1}
    assert set(irq0(ev)) <= set(timers["tick"].tolist())


@pytest.mark.parametrize("n", [1001, 1000, 3])
def test_mode3_square_wave_edges(n: int) -> None:
    m = idle_machine()
    cfg = m.config
    run_to(m, 50_000)
    load = program(m, 0, 3, n)
    m.take_events()
    run_to(m, tick_of(cfg, load + 5 * n))
    ev = m.take_events()
    high = (n + 1) // 2
    assert irq0(ev, 0) == [tick_of(cfg, load + k * n + high) for k in range(5)]
    assert irq0(ev, 1) == [tick_of(cfg, load + k * n) for k in range(1, 6)]


def test_mode3_count_reads_by_twos() -> None:
    m = idle_machine()
    cfg = m.config
    n = 1001
    load = program(m, 0, 3, n)
    for t in (1_000, 30_000, 45_000, 77_777, 123_456):
        run_to(m, t)
        p = (clock(cfg, t) - load) % n
        q = p if p < (n + 1) // 2 else p - (n + 1) // 2
        assert latched_count(m, 0) == (n - 1) - 2 * q


def test_mode0_one_shot() -> None:
    m = idle_machine()
    cfg = m.config
    run_to(m, 1_000)
    m.port_write(0x43, 0x30)  # mode 0: OUT stays low (it was low)
    m.port_write(0x40, 0x10)
    assert m.next_deadline is None  # half a count: stopped
    m.port_write(0x40, 0x27)  # 2710h = 10000
    load = clock(cfg, 1_000) + 1
    assert m.next_deadline == tick_of(cfg, load + 10_000)
    run_to(m, 2_000_000)
    ev = m.take_events()
    assert irq0(ev) == [tick_of(cfg, load + 10_000)] and irq0(ev, 1)
    assert m.next_deadline is None
    # The counter wraps through FFFFh and keeps counting; OUT stays high.
    assert latched_count(m, 0) == (10_000 - (clock(cfg, 2_000_000) - load)) % 65536
    # A new control word drops OUT at once.
    m.port_write(0x43, 0x30)
    assert irq0(m.take_events()) == [2_000_000]


def test_mode4_strobe() -> None:
    m = idle_machine()
    cfg = m.config
    run_to(m, 777)
    load = program(m, 0, 4, 500)
    run_to(m, 1_000_000)
    ev = m.take_events()
    assert irq0(ev, 1) == [777, tick_of(cfg, load + 501)]
    assert irq0(ev, 0) == [tick_of(cfg, load + 500)]
    assert m.next_deadline is None


def test_next_deadline_is_next_channel0_edge() -> None:
    m = idle_machine()
    cfg = m.config
    assert m.next_deadline is None
    program(m, 2, 2, 100)  # channel 2 has no IRQ: no deadline
    assert m.next_deadline is None
    run_to(m, 3_000)
    load = program(m, 0, 2, 2000)
    assert m.next_deadline == tick_of(cfg, load + 1999)
    run_to(m, tick_of(cfg, load + 1999))
    assert m.next_deadline == tick_of(cfg, load + 2000)
    run_to(m, tick_of(cfg, load + 2000) + 5)
    assert m.next_deadline == tick_of(cfg, load + 3999)
    m.port_write(0x43, 0x30)  # mode 0 without a count: nothing to wait for
    assert m.next_deadline is None


def test_mode2_new_count_waits_for_end_of_cycle() -> None:
    m = idle_machine()
    cfg = m.config
    load = program(m, 0, 2, 3000)
    run_to(m, tick_of(cfg, load + 1000))
    m.port_write(0x40, 500 & 0xFF)
    m.port_write(0x40, 500 >> 8)
    run_to(m, tick_of(cfg, load + 3000 + 3 * 500) + 1)
    rises = irq0(m.take_events(), 1)
    assert rises[1:] == [tick_of(cfg, load + 3000 + k * 500) for k in range(4)]


def test_mode3_new_count_waits_for_end_of_half_cycle() -> None:
    m = idle_machine()
    cfg = m.config
    load = program(m, 0, 3, 4000)
    m.take_events()
    run_to(m, tick_of(cfg, load + 1000))  # in the high half, which ends at load + 2000
    m.port_write(0x40, 600 & 0xFF)
    m.port_write(0x40, 600 >> 8)
    run_to(m, tick_of(cfg, load + 3100))
    ev = m.take_events()
    # Low half of the new count (300 clocks) from load + 2000, then 300 high, 300 low.
    assert irq0(ev, 0) == [tick_of(cfg, load + 2000), tick_of(cfg, load + 2600)]
    assert irq0(ev, 1) == [tick_of(cfg, load + 2300), tick_of(cfg, load + 2900)]


def test_count_zero_is_65536_binary_and_10000_bcd() -> None:
    m = idle_machine()
    cfg = m.config
    load = program(m, 0, 2, 0)
    run_to(m, tick_of(cfg, load + 2 * 65536) + 1)
    assert irq0(m.take_events(), 1)[1:] == [tick_of(cfg, load + 65536), tick_of(cfg, load + 131072)]
    t = m.ticks
    load = program(m, 0, 2, 0, bcd=True)
    assert irq0(m.take_events()) == []  # OUT was already high
    run_to(m, tick_of(cfg, load + 20_000) + 1)
    assert irq0(m.take_events(), 1) == [tick_of(cfg, load + 10_000), tick_of(cfg, load + 20_000)]
    assert t < m.ticks


# ---- reading: latches, read-back, flip-flops, BCD ----------------------------------------

def test_counter_latch_holds_value() -> None:
    m = idle_machine()
    cfg = m.config
    n = 50_000
    load = program(m, 0, 2, n)
    run_to(m, 1_234_567)
    m.port_write(0x43, 0x00)
    expected = n - (clock(cfg, 1_234_567) - load) % n
    run_to(m, 2_000_000)
    m.port_write(0x43, 0x00)  # a second latch before the read is ignored
    assert read_count(m, 0) == expected
    # Unlatched, the counter reads live.
    assert read_count(m, 0) == n - (clock(cfg, 2_000_000) - load) % n


def test_read_back_count_and_status() -> None:
    m = idle_machine()
    cfg = m.config
    run_to(m, 10_000)
    m.port_write(0x43, 0xB4)  # channel 2, LSB/MSB, mode 2, binary
    m.port_write(0x43, 0xE8)  # read-back status of channel 2: no count yet
    assert m.port_read(0x42) == 0x80 | 0x40 | 0x34  # OUT high, null count
    m.port_write(0x61, 0x01)  # gate 2 high
    m.port_write(0x42, 0x00)
    m.port_write(0x42, 0x10)  # 1000h
    load = clock(cfg, 10_000) + 1
    m.port_write(0x43, 0xE8)
    assert m.port_read(0x42) == 0xC0 | 0x34  # not loaded until the next clock
    run_to(m, 20_000)
    # Count and status together: status first, then LSB, MSB.
    m.port_write(0x43, 0xC8)
    run_to(m, 30_000)
    assert m.port_read(0x42) == 0x80 | 0x34
    assert read_count(m, 2) == 0x1000 - (clock(cfg, 20_000) - load) % 0x1000
    # Status of channel 0 in mode 0 with a count, OUT low, and BCD.
    m.port_write(0x43, 0x31)
    m.port_write(0x40, 0x99)
    m.port_write(0x40, 0x99)
    run_to(m, 31_000)
    m.port_write(0x43, 0xE2)
    assert m.port_read(0x40) == 0x31
    # Read-back of several channels' counts at one instant.
    m.port_write(0x43, 0xDA)  # count only, channels 0 and 2
    c = clock(cfg, 31_000)
    run_to(m, 40_000)
    assert read_count(m, 0) == int(str(9999 - (c - (clock(cfg, 30_000) + 1))), 16)
    assert read_count(m, 2) == 0x1000 - (c - load) % 0x1000


def test_access_modes_and_flip_flops() -> None:
    m = idle_machine()
    cfg = m.config
    # LSB only: the MSB is zero.
    m.port_write(0x43, 0x54)  # channel 1, LSB, mode 2
    m.port_write(0x41, 0x80)
    load = clock(cfg, 0) + 1
    run_to(m, 1_000)
    m.port_write(0x43, 0x40)
    assert m.port_read(0x41) == 0x80 - (clock(cfg, 1_000) - load) % 0x80
    # MSB only: the LSB is zero, and reads return the MSB alone.
    m.port_write(0x43, 0x64)  # channel 1, MSB, mode 2
    m.port_write(0x41, 0x12)
    load = clock(cfg, 1_000) + 1
    run_to(m, 5_000)
    m.port_write(0x43, 0x40)
    expected = 0x1200 - (clock(cfg, 5_000) - load) % 0x1200
    assert m.port_read(0x41) == expected >> 8
    # LSB then MSB: the read flip-flop alternates.
    m.port_write(0x43, 0x74)
    m.port_write(0x41, 0x34)
    m.port_write(0x41, 0x12)
    load = clock(cfg, 5_000) + 1
    run_to(m, 5_100)
    assert latched_count(m, 1) == 0x1234 - (clock(cfg, 5_100) - load)
    # Until the load edge the counter still holds its old count.
    m.port_write(0x43, 0x74)
    m.port_write(0x41, 0xCD)
    m.port_write(0x41, 0xAB)
    assert latched_count(m, 1) == 0x1234 - (clock(cfg, 5_100) - load)
    load = clock(cfg, 5_100) + 1
    run_to(m, 6_000)
    assert latched_count(m, 1) == 0xABCD - (clock(cfg, 6_000) - load)
    # A control word resets the read flip-flop (and drops the latch): the next read is an LSB.
    m.port_write(0x43, 0x40)
    assert m.port_read(0x41) == (0xABCD - (clock(cfg, 6_000) - load)) & 0xFF
    m.port_write(0x43, 0x74)
    m.port_write(0x43, 0x40)
    assert m.port_read(0x41) == (0xABCD - (clock(cfg, 6_000) - load)) & 0xFF
    # A second byte written after a control word is again an LSB.
    m.port_write(0x41, 0x01)
    m.port_write(0x43, 0x74)
    m.port_write(0x41, 0x00)
    m.port_write(0x41, 0x02)
    load = clock(cfg, 6_000) + 1
    run_to(m, 6_100)
    assert latched_count(m, 1) == 0x200 - (clock(cfg, 6_100) - load)


def test_bcd_counting() -> None:
    m = idle_machine()
    cfg = m.config
    load = program(m, 0, 2, 0x1234, bcd=True)  # 1234 clocks
    run_to(m, tick_of(cfg, load + 3 * 1234) + 1)
    assert irq0(m.take_events(), 1)[1:] == [tick_of(cfg, load + k * 1234) for k in (1, 2, 3)]
    for t in (400_000, 401_000, 500_000):
        run_to(m, t)
        v = 1234 - (clock(cfg, t) - load) % 1234
        assert latched_count(m, 0) == int(str(v), 16)
    # Mode 0 in BCD wraps through 9999.
    m.port_write(0x43, 0x31)
    m.port_write(0x40, 0x05)
    m.port_write(0x40, 0x00)
    load = clock(cfg, 500_000) + 1
    run_to(m, 501_000)
    assert latched_count(m, 0) == int(str((5 - (clock(cfg, 501_000) - load)) % 10_000), 16)


# ---- channel 2, port 61h ----------------------------------------------------------------

def test_port61_bits_and_channel2_gate() -> None:
    m = idle_machine()
    cfg = m.config
    m.port_write(0x61, 0xFE)  # bits 4-7 are not writable; gate 2 low
    assert m.port_read(0x61) & 0xCF == 0x0E
    m.port_write(0x43, 0xB0)  # channel 2, mode 0
    m.port_write(0x42, 0xE8)
    m.port_write(0x42, 0x03)  # 1000: loaded, but the low gate holds it
    run_to(m, 50_000)
    assert m.port_read(0x61) & 0x20 == 0
    assert latched_count(m, 2) == 1000
    m.port_write(0x61, 0x03)  # gate high, speaker data on
    gate_on = clock(cfg, 50_000)
    run_to(m, 60_000)
    assert latched_count(m, 2) == 1000 - (clock(cfg, 60_000) - gate_on)
    m.port_write(0x61, 0x02)  # gate low: the count holds
    held = 1000 - (clock(cfg, 60_000) - gate_on)
    run_to(m, 100_000)
    assert latched_count(m, 2) == held
    assert m.port_read(0x61) & 0x23 == 0x02
    m.port_write(0x61, 0x01)
    resume = clock(cfg, 100_000)
    done = tick_of(cfg, resume + held)
    run_to(m, done - 1)
    assert m.port_read(0x61) & 0x20 == 0
    run_to(m, done)
    assert m.port_read(0x61) & 0x21 == 0x21
    assert m.next_deadline is None and irq0(m.take_events()) == []


def test_channel2_mode1_gate_trigger() -> None:
    m = idle_machine()
    cfg = m.config
    m.port_write(0x43, 0xB2)  # channel 2, mode 1: OUT high, waiting for a trigger
    m.port_write(0x42, 0x64)
    m.port_write(0x42, 0x00)  # 100
    run_to(m, 20_000)
    assert m.port_read(0x61) & 0x20 == 0x20
    m.port_write(0x61, 0x01)
    load = clock(cfg, 20_000) + 1
    run_to(m, tick_of(cfg, load))
    assert m.port_read(0x61) & 0x20 == 0  # low from the clock after the trigger
    run_to(m, tick_of(cfg, load + 100) - 1)
    assert m.port_read(0x61) & 0x20 == 0
    run_to(m, tick_of(cfg, load + 100))
    assert m.port_read(0x61) & 0x20 == 0x20


def test_channel2_mode5_strobe_on_each_trigger() -> None:
    m = idle_machine()
    cfg = m.config
    m.port_write(0x43, 0xBA)  # channel 2, mode 5
    m.port_write(0x42, 0x20)
    m.port_write(0x42, 0x00)  # 32
    for start in (10_000, 40_000):
        run_to(m, start)
        m.port_write(0x61, 0x01)  # rising gate: load on the next clock
        load = clock(cfg, start) + 1
        for edge, out in ((load + 31, 0x20), (load + 32, 0), (load + 33, 0x20)):
            run_to(m, tick_of(cfg, edge))
            assert m.port_read(0x61) & 0x20 == out
        m.port_write(0x61, 0x00)


def test_channel2_mode3_gate_low_forces_out_high_and_rise_reloads() -> None:
    m = idle_machine()
    cfg = m.config
    m.port_write(0x61, 0x01)
    load = program(m, 2, 3, 100)
    run_to(m, tick_of(cfg, load + 60))  # low half
    assert m.port_read(0x61) & 0x20 == 0
    m.port_write(0x61, 0x00)
    assert m.port_read(0x61) & 0x20 == 0x20
    run_to(m, 30_000)
    m.port_write(0x61, 0x01)
    load = clock(cfg, 30_000) + 1
    run_to(m, tick_of(cfg, load + 49))
    assert m.port_read(0x61) & 0x20 == 0x20
    run_to(m, tick_of(cfg, load + 50))
    assert m.port_read(0x61) & 0x20 == 0


def test_refresh_toggle_follows_the_clock() -> None:
    m = idle_machine()
    cfg = m.config
    seen = []
    for t in range(0, 20_000, 377):
        run_to(m, t)
        bit = m.port_read(0x61) >> 4 & 1
        assert bit == clock(cfg, t) // 18 & 1
        seen.append(bit)
    assert 0 in seen and 1 in seen


# ---- a guest counting timer interrupts; snapshots --------------------------------------

def guest_machine() -> Machine:
    """A real-mode guest that sleeps with `sti; hlt; jmp` and counts IRQ 0 at 0:3000h."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, REAL_CS)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, REAL_DS))
    r.eip, r.esp, r.eflags, r.halted = 0x1000, 0x8000, 0x2, False
    m.set_regs(r)
    m.write(0x1000, bytes([0xFB, 0xF4, 0xEB, 0xFC]))  # sti; hlt; jmp 1000h
    # push ax; inc word [3000h]; mov al, 20h; out 20h, al; pop ax; iret
    m.write(0x2000, bytes([0x50, 0xFF, 0x06, 0x00, 0x30, 0xB0, 0x20, 0xE6, 0x20, 0x58, 0xCF]))
    m.write(8 * 4, (0x2000).to_bytes(2, "little") + (0).to_bytes(2, "little"))
    return m


def init_pic(m: Machine) -> None:
    for port, val in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01),
                      (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01),
                      (0x21, 0xFE), (0xA1, 0xFF)):
        m.port_write(port, val)


def test_guest_counts_timer_interrupts() -> None:
    m = guest_machine()
    cfg = m.config
    n = 11_932  # about 10 ms
    load = program(m, 0, 2, n)
    init_pic(m)  # ICW1 drops the edge the control word latched
    m.take_events()
    end = tick_of(cfg, load + 20 * n) + tick_of(cfg, n) // 2
    m.run(end)
    assert int.from_bytes(m.read(0x3000, 2), "little") == 20
    ev = m.take_events()
    inta = ev[ev["kind"] == Kind.INTA]
    assert inta["a"].tolist() == [8] * 20
    rises = [tick_of(cfg, load + k * n) for k in range(1, 21)]
    assert irq0(ev, 1) == rises
    # Each interrupt is taken at its edge: the CPU was halted.
    assert inta["tick"].tolist() == rises


def test_snapshot_mid_count_replays_identically() -> None:
    a = guest_machine()
    program(a, 0, 3, 9_999)
    program(a, 2, 4, 5_000)
    init_pic(a)
    a.run(3_333_333)
    a.port_write(0x43, 0x80)  # latch channel 2, read half of it
    a.port_read(0x42)
    a.port_write(0x41, 0x00)  # channel 1: half a count in the write flip-flop
    a.take_events()
    snap = a.snapshot()
    b = Machine(MachineConfig(ram_size=1 << 20))
    b.restore(snap)
    assert b.ticks == a.ticks and b.fingerprint() == a.fingerprint()
    assert b.next_deadline == a.next_deadline
    for m in (a, b):
        m.run(9_000_000)
    assert a.fingerprint() == b.fingerprint()
    ea, eb = a.take_events(), b.take_events()
    assert len(ea) > 10 and np.array_equal(ea, eb)
    assert a.port_read(0x42) == b.port_read(0x42)
    assert read_count(a, 0) == read_count(b, 0)
    assert a.read(0x3000, 2) == b.read(0x3000, 2) != b"\0\0"


def test_device_state_is_deterministic_across_machines() -> None:
    def build() -> bytes:
        m = idle_machine()
        program(m, 0, 2, 300)
        m.port_write(0x61, 0x01)
        program(m, 2, 3, 77)
        m.run(500_000)
        m.port_write(0x43, 0xC2)
        return m.devices_state_bytes()

    assert build() == build()


def test_damaged_pit_state_in_a_snapshot_is_contained() -> None:
    """Random bytes over the PIT's saved state: restore, run and read without a crash or a
    hang (the run returns, every deadline lies ahead of the clock)."""
    a = guest_machine()
    program(a, 0, 2, 1_000)
    program(a, 2, 3, 0x99, bcd=True)
    init_pic(a)
    a.run(100_000)
    snap = bytearray(a.snapshot())
    dev = snap.find(a.devices_state_bytes())
    assert dev > 0
    pit = dev + 8 + 34  # version, presence flag, the PIC pair
    rng = np.random.default_rng(8254)
    for _ in range(40):
        bad = bytearray(snap)
        lo = pit + int(rng.integers(0, 200))
        bad[lo:lo + 24] = rng.integers(0, 256, 24, dtype=np.uint8).tobytes()
        m = Machine(MachineConfig(ram_size=1 << 20))
        m.restore(bytes(bad))
        target = m.ticks + 200_000
        for _ in range(1_000):
            if m.ticks >= target:
                break
            m.run(target)
            m.take_events()
            d = m.next_deadline
            assert d is None or d > m.ticks
        assert m.ticks >= target
        for port in (0x40, 0x41, 0x42, 0x61):
            assert 0 <= m.port_read(port) <= 0xFF
        m.port_write(0x43, 0xFE)
        for port in (0x40, 0x41, 0x42):
            m.port_read(port)
