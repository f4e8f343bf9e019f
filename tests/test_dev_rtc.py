"""The MC146818 RTC and CMOS NVRAM (ports 70h/71h): clock, calendar, interrupts, NVRAM.

Expected values are computed here, independently of the core: calendar fields with
``datetime`` in UTC, tick positions with exact integer arithmetic from ``tick_hz`` (the
divider chain counts 32768 cycles per guest second, from the tick of the injected time).

The guest is ``sti; hlt; jmp $-1`` with both PICs masked: the clock fast-forwards through
idle time, so hours of guest time cost nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aero.events import Device, Kind
from aero.machine import Machine, MachineConfig, Segment

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HZ = MachineConfig().tick_hz
CHAIN = 32768
IDLE = bytes([0xFB, 0xF4, 0xEB, 0xFD])  # sti; hlt; jmp short back to the hlt
CODE = 0x7C00
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
SET, PIE, AIE, UIE, DM, H24 = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
TIME_REGS = (0, 2, 4, 6, 7, 8, 9, 0x32)


def unix(*args: int) -> int:
    return int((datetime(*args, tzinfo=UTC) - EPOCH).total_seconds())


def bcd(v: int) -> int:
    return (v // 10) << 4 | v % 10


def expected(t: int, binary: bool = False, h24: bool = True, dow_offset: int = 0) -> dict[int, int]:
    """The time registers for Unix time t."""
    d = EPOCH + timedelta(seconds=t)
    enc = (lambda v: v) if binary else bcd
    if h24:
        hour = enc(d.hour)
    else:
        hour = enc(d.hour % 12 or 12) | (0x80 if d.hour >= 12 else 0)
    dow = (d.isoweekday() % 7 + dow_offset) % 7 + 1  # 1 = Sunday
    return {0: enc(d.second), 2: enc(d.minute), 4: hour, 6: enc(dow), 7: enc(d.day),
            8: enc(d.month), 9: enc(d.year % 100), 0x32: enc(d.year // 100)}


def real_mode(m: Machine, ip: int = CODE, sp: int = 0x7000) -> None:
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
    r.eip, r.esp, r.halted = ip, sp, False
    m.set_regs(r)


def idle_machine(tick_hz: int = HZ, ram_size: int = 16 << 20) -> Machine:
    m = Machine(MachineConfig(tick_hz=tick_hz, ram_size=ram_size))
    m.write(CODE, IDLE)
    real_mode(m)
    m.port_write(0x21, 0xFF)  # OCW1: mask every line, so IRQ 8 never interrupts the idle loop
    m.port_write(0xA1, 0xFF)
    return m


def rd(m: Machine, idx: int) -> int:
    m.port_write(0x70, idx)
    return m.port_read(0x71)


def wr(m: Machine, idx: int, val: int) -> None:
    m.port_write(0x70, idx)
    m.port_write(0x71, val)


def time_regs(m: Machine) -> dict[int, int]:
    return {i: rd(m, i) for i in TIME_REGS}


def irq8_edges(events: np.ndarray, level: int = 1) -> list[int]:
    sel = (events["kind"] == Kind.IRQ) & (events["a"] == 8) & (events["b"] == level)
    return [int(t) for t in events["tick"][sel]]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tick_of_count(c: int, hz: int = HZ, origin: int = 0, c0: int = 0) -> int:
    """First tick at which the divider chain (c0 at tick origin) has counted c cycles."""
    return origin + ceil_div((c - c0) * hz, CHAIN)


def count_at(t: int, hz: int = HZ, origin: int = 0, c0: int = 0) -> int:
    return c0 + (t - origin) * CHAIN // hz


# ---- the clock and the calendar ----

def test_power_on_state_and_default_time() -> None:
    m = idle_machine()
    assert time_regs(m) == expected(unix(2000, 1, 1))
    assert rd(m, 6) == 7  # Saturday
    assert (rd(m, REG_A), rd(m, REG_B), rd(m, REG_D)) == (0x26, 0x02, 0x80)
    assert m.port_read(0x70) == 0xFF  # the index port is write-only
    assert m.next_deadline is None
    m.run(HZ - 1)
    assert rd(m, 0) == 0x00
    m.run(HZ)
    assert rd(m, 0) == 0x01
    m.run(3601 * HZ + 5)
    assert time_regs(m) == expected(unix(2000, 1, 1, 1, 0, 1))


# (base, offsets in seconds to check): bases just before calendar boundaries.
ROLLOVERS = [
    (unix(2024, 2, 28, 23, 59, 58), [1, 2, 3, 86400 + 2, 366 * 86400]),   # leap day 2024
    (unix(2023, 2, 28, 23, 59, 59), [1, 60, 3600 * 24 * 365]),            # no leap day
    (unix(1999, 12, 31, 23, 59, 59), [1, 2, 59 * 86400 + 1]),            # century 19 -> 20
    (unix(2000, 2, 28, 23, 59, 59), [1, 86400 + 1]),                      # 2000 is leap
    (unix(2100, 2, 28, 23, 59, 59), [1]),                                 # 2100 is not
    (unix(2038, 1, 19, 3, 14, 7), [1, 40000, 10**8]),                     # past 2^31 seconds
    (unix(2024, 4, 30, 11, 59, 59), [1, 43200, 31 * 86400 + 43201]),      # 30-day month, noon
    (unix(1985, 12, 31, 23, 59, 59), [1]),                                # before 2000
    (-1, [1, 2]),                                                         # before 1970
]


@pytest.mark.parametrize("base,offsets", ROLLOVERS)
def test_time_rolls_over_all_fields(base: int, offsets: list[int]) -> None:
    m = idle_machine()
    m.inject(Kind.RTC_TIME, 0, base)
    for fmt_b, binary, h24 in [(0x02, False, True), (0x06, True, True),
                               (0x00, False, False), (0x04, True, False)]:
        wr(m, REG_B, fmt_b)
        assert time_regs(m) == expected(base, binary, h24), hex(fmt_b)
    wr(m, REG_B, 0x02)
    for off in offsets:
        m.run(off * HZ - 1)
        assert time_regs(m) == expected(base + off - 1)
        m.run(off * HZ)
        assert time_regs(m) == expected(base + off)
        for fmt_b, binary, h24 in [(0x06, True, True), (0x00, False, False),
                                   (0x04, True, False)]:
            wr(m, REG_B, fmt_b)
            assert time_regs(m) == expected(base + off, binary, h24), hex(fmt_b)
        wr(m, REG_B, 0x02)


@pytest.mark.parametrize("hz", [1_000, 1_000_003, 999_999_937])
def test_seconds_change_exactly_every_tick_hz_ticks(hz: int) -> None:
    m = idle_machine(tick_hz=hz)
    m.run(12345)
    base = unix(2024, 12, 31, 23, 59, 50)
    m.inject(Kind.RTC_TIME, 0, base)
    for k in (1, 2, 10, 11, 1000):
        m.run(12345 + k * hz - 1)
        assert time_regs(m) == expected(base + k - 1)
        m.run(12345 + k * hz)
        assert time_regs(m) == expected(base + k)


def test_twelve_hour_mode_encodings() -> None:
    m = idle_machine()
    cases = [(0, 0x12, 12), (1, 0x01, 1), (11, 0x11, 11), (12, 0x92, 0x8C), (13, 0x81, 0x81),
             (23, 0x91, 0x8B)]
    for hour, want_bcd, want_bin in cases:
        m.inject(Kind.RTC_TIME, 0, unix(2024, 6, 1, hour, 30, 0))
        wr(m, REG_B, 0x00)
        assert rd(m, 4) == want_bcd
        wr(m, REG_B, DM)
        assert rd(m, 4) == want_bin


def test_time_written_by_a_guest_program_is_kept_and_advances() -> None:
    """SET, write the time bytes in BCD, clear SET; a real-mode program does the OUTs."""
    m = idle_machine()
    m.inject(Kind.RTC_TIME, 0, unix(2001, 5, 5, 5, 5, 5))
    writes = [(REG_B, SET | H24), (0, 0x58), (2, 0x59), (4, 0x23), (6, 0x04), (7, 0x31),
              (8, 0x12), (9, 0x99), (0x32, 0x20), (REG_B, H24)]
    code = b"".join(bytes([0xB0, i, 0xE6, 0x70, 0xB0, v, 0xE6, 0x71]) for i, v in writes)
    prog = 0x8000
    m.write(prog, code + IDLE)
    m.run(HZ // 2)
    real_mode(m, ip=prog)
    m.run(HZ // 2 + 1000)
    written = unix(2099, 12, 31, 23, 59, 58)
    true_dow = (EPOCH + timedelta(seconds=written)).isoweekday() % 7  # 0 = Sunday
    offset = (4 - 1 - true_dow) % 7  # the guest wrote 4 (Wednesday)
    assert true_dow != 3 and time_regs(m) == expected(written, dow_offset=offset)
    # The divider chain kept its phase: the next update is at the next whole second.
    m.run(HZ - 1)
    assert rd(m, 0) == 0x58
    m.run(HZ)
    assert rd(m, 0) == 0x59
    m.run(2 * HZ)
    assert time_regs(m) == expected(written + 2, dow_offset=offset)  # 2100-01-01
    assert rd(m, 6) == 0x05  # the weekday register counts on from the guest's value
    m.run(2 * HZ + 86400 * HZ)
    assert rd(m, 6) == 0x06


def test_host_written_time_in_binary_twelve_hour_mode() -> None:
    m = idle_machine()
    m.run(HZ // 4)
    wr(m, REG_B, SET | DM)
    for idx, val in [(0, 7), (2, 8), (4, 0x80 | 9), (7, 29), (8, 2), (9, 24), (0x32, 20)]:
        wr(m, idx, val)
    assert rd(m, 0) == 7 and rd(m, 4) == 0x89  # held while SET is 1
    m.run(3 * HZ - 100)
    assert rd(m, 0) == 7
    assert rd(m, REG_A) == 0x26  # no update in progress while SET holds the clock
    m.run(3 * HZ)
    wr(m, REG_B, DM)
    written = unix(2024, 2, 29, 21, 8, 7)
    dow = rd(m, 6)
    assert time_regs(m) == expected(written, binary=True, h24=False, dow_offset=(dow - 5) % 7)
    m.run(4 * HZ)
    assert rd(m, 0) == 8
    wr(m, REG_B, H24)
    assert time_regs(m)[4] == 0x21


def test_time_byte_written_without_set_takes_effect_at_once() -> None:
    m = idle_machine()
    base = unix(2010, 1, 31, 10, 0, 0)
    m.inject(Kind.RTC_TIME, 0, base)
    m.run(HZ // 3)
    wr(m, 2, 0x45)  # minutes
    assert time_regs(m) == expected(base + 45 * 60)
    wr(m, 8, 0x02)  # February 31st is March 3rd: the clock is a count
    assert (rd(m, 7), rd(m, 8)) == (0x03, 0x03)
    m.run(HZ)
    assert rd(m, 0) == 0x01


def test_divider_reset_stops_the_clock_and_restarts_half_a_second_later() -> None:
    m = idle_machine()
    base = unix(2020, 1, 1)
    m.inject(Kind.RTC_TIME, 0, base)
    m.run(HZ + HZ // 10)
    wr(m, REG_A, 0x70)  # divider chain in reset
    m.run(10 * HZ)
    assert rd(m, 0) == 0x01 and rd(m, REG_A) == 0x70
    wr(m, REG_C, 0)  # read-only
    assert rd(m, REG_C) == 0x50  # PF and UF from before the divider reset
    assert rd(m, REG_C) == 0
    m.run(20 * HZ)
    assert rd(m, REG_C) == 0  # nothing counts while the chain is stopped
    start = m.ticks
    wr(m, REG_A, 0x26)
    first = start + ceil_div(HZ, 2)
    m.run(first - 1)
    assert rd(m, 0) == 0x01
    m.run(first)
    assert rd(m, 0) == 0x02
    m.run(first + HZ)
    assert rd(m, 0) == 0x03


# ---- interrupts ----

@pytest.mark.parametrize("hz", [HZ, 1_000_003])
@pytest.mark.parametrize("rate,period", [(6, 32), (3, 4), (1, 128), (2, 256), (8, 128),
                                         (15, 16384)])
def test_periodic_interrupt_edges_at_exact_ticks(hz: int, rate: int, period: int) -> None:
    m = idle_machine(tick_hz=hz)
    m.inject(Kind.RTC_TIME, 0, unix(2022, 7, 7))
    m.run(hz // 7)
    wr(m, REG_A, 0x20 | rate)
    rd(m, REG_C)
    wr(m, REG_B, H24 | PIE)
    m.take_events()
    c = count_at(m.ticks, hz)
    want = [tick_of_count((c // period + k) * period, hz) for k in range(1, 41)]
    got = []
    for _ in range(40):
        d = m.next_deadline
        assert d is not None
        got.append(d)
        m.run(d)
        assert rd(m, REG_C) & 0xC0 == 0xC0
    assert got == want
    ev = m.take_events()
    assert irq8_edges(ev, 1) == want
    assert irq8_edges(ev, 0) == want  # reading C lowered IRQ 8 at once
    timers = ev[ev["kind"] == Kind.TIMER]
    assert list(timers["tick"]) == want and {int(a) for a in timers["a"]} == {Device.RTC}


def test_periodic_interrupts_through_the_pic_to_a_guest_handler() -> None:
    """1024 Hz for one second: a handler that reads C and sends EOI runs 1024 times while the
    main program spins (``sti; jmp $``)."""
    hz = 1_000_000
    m = Machine(MachineConfig(tick_hz=hz))
    handler = 0x7E00
    count = 0x600
    init = bytes([
        0xB0, 0x11, 0xE6, 0x20, 0xE6, 0xA0,  # ICW1 to both PICs
        0xB0, 0x08, 0xE6, 0x21, 0xB0, 0x70, 0xE6, 0xA1,  # ICW2: vectors 08h, 70h
        0xB0, 0x04, 0xE6, 0x21, 0xB0, 0x02, 0xE6, 0xA1,  # ICW3
        0xB0, 0x01, 0xE6, 0x21, 0xE6, 0xA1,  # ICW4: 8086 mode
        0xB0, 0xFB, 0xE6, 0x21, 0xB0, 0xFE, 0xE6, 0xA1,  # unmask IRQ 2 and IRQ 8
        0xB0, 0x0C, 0xE6, 0x70, 0xE4, 0x71,  # read C: no stale flags
        0xB0, 0x0B, 0xE6, 0x70, 0xB0, 0x42, 0xE6, 0x71,  # B = PIE | 24h
        0xFB, 0xEB, 0xFE,  # sti; jmp $
    ])
    isr = bytes([
        0x50,  # push ax
        0xB0, 0x0C, 0xE6, 0x70, 0xE4, 0x71,  # read C
        0xFF, 0x06, count & 0xFF, count >> 8,  # inc word [count]
        0xB0, 0x20, 0xE6, 0xA0, 0xE6, 0x20,  # EOI to the slave and the master
        0x58, 0xCF,  # pop ax; iret
    ])
    m.write(CODE, init)
    m.write(handler, isr)
    m.write(0x70 * 4, handler.to_bytes(2, "little") + b"\0\0")
    real_mode(m)
    m.run(hz + 100)
    assert int.from_bytes(m.read(count, 2), "little") == 1024
    want = [tick_of_count(32 * k, hz) for k in range(1, 1025)]
    ev = m.take_events()
    assert irq8_edges(ev, 1) == want
    inta = ev[ev["kind"] == Kind.INTA]
    assert len(inta) == 1024 and {int(a) for a in inta["a"]} == {0x70}


def test_update_interrupt_every_second() -> None:
    m = idle_machine()
    origin = 12_345
    m.run(origin)
    m.inject(Kind.RTC_TIME, 0, unix(2030, 3, 3, 3, 3, 3))
    wr(m, REG_A, 0x20)  # no periodic rate
    wr(m, REG_B, H24 | UIE)
    for k in range(1, 6):
        assert m.next_deadline == origin + k * HZ
        m.run(origin + k * HZ)
        assert rd(m, REG_C) == 0x90
        assert rd(m, 0) == bcd(3 + k)
    ev = m.take_events()
    assert irq8_edges(ev) == [origin + k * HZ for k in range(1, 6)]


def test_alarm_fires_at_the_matching_second() -> None:
    m = idle_machine()
    base = unix(2015, 8, 20, 13, 59, 50)
    m.inject(Kind.RTC_TIME, 0, base)
    rd(m, REG_C)
    for idx, val in [(1, 0x05), (3, 0x00), (5, 0x14)]:  # 14:00:05
        wr(m, idx, val)
    wr(m, REG_B, H24 | AIE)
    assert m.next_deadline == 15 * HZ
    m.run(15 * HZ - 1)
    assert irq8_edges(m.take_events()) == []
    m.run(15 * HZ)
    assert irq8_edges(m.take_events()) == [15 * HZ]
    # PF and UF were set too (their interrupts are disabled), IRQF because of AF.
    assert rd(m, REG_C) == 0xF0
    assert m.next_deadline == 15 * HZ + 86400 * HZ  # the same time tomorrow
    # "Don't care" minutes and hours: every minute at :05.
    wr(m, 3, 0xC0)
    wr(m, 5, 0xFF)
    assert m.next_deadline == 75 * HZ
    # Everything "don't care": every second.
    wr(m, 1, 0xC0)
    assert m.next_deadline == 16 * HZ
    # An alarm that can never match arms nothing.
    wr(m, 1, 0x61)
    assert m.next_deadline is None


def test_alarm_in_twelve_hour_binary_mode() -> None:
    m = idle_machine()
    m.inject(Kind.RTC_TIME, 0, unix(2015, 8, 20, 22, 59, 58))
    wr(m, REG_B, DM)  # binary, 12-hour
    for idx, val in [(1, 0), (3, 0), (5, 0x80 | 11)]:  # 11:00:00 PM
        wr(m, idx, val)
    rd(m, REG_C)
    wr(m, REG_B, DM | AIE)
    assert m.next_deadline == 2 * HZ
    m.run(2 * HZ)
    assert rd(m, REG_C) & 0xA0 == 0xA0


def test_flags_of_disabled_sources_appear_without_irq_or_timer() -> None:
    m = idle_machine()
    m.inject(Kind.RTC_TIME, 0, unix(2011, 11, 11, 11, 11, 11))
    wr(m, 1, 0xC0)
    wr(m, 3, 0xC0)
    wr(m, 5, 0xC0)
    assert m.next_deadline is None
    m.run(HZ // 2)
    assert rd(m, REG_C) == 0x40  # periodic only: no second boundary yet
    m.run(HZ // 2 + 100)
    assert rd(m, REG_C) == 0x00  # less than 1/1024 s later
    m.run(5 * HZ // 2)
    assert rd(m, REG_C) == 0x70
    assert rd(m, REG_C) == 0x00
    wr(m, REG_A, 0x20)  # rate 0: no periodic flag
    m.run(4 * HZ)
    assert rd(m, REG_C) == 0x30
    m.run(4 * HZ + HZ // 2)
    assert m.next_deadline is None
    ev = m.take_events()
    assert not (ev["kind"] == Kind.IRQ).any() and not (ev["kind"] == Kind.TIMER).any()


def test_enabling_a_source_with_its_flag_pending_raises_irq_at_once() -> None:
    m = idle_machine()
    m.run(HZ // 10)
    m.take_events()
    wr(m, REG_B, H24 | PIE)
    assert m.next_deadline is None  # the IRQ is already high: no timer until C is read
    tick = m.ticks
    assert irq8_edges(m.take_events()) == [tick]
    assert rd(m, REG_C) == 0xC0
    assert m.next_deadline == tick_of_count((count_at(tick) // 32 + 1) * 32)
    wr(m, REG_B, H24)  # disabled again: no timer
    assert m.next_deadline is None


def test_set_clears_uie_and_stops_update_flags() -> None:
    m = idle_machine()
    rd(m, REG_C)
    wr(m, REG_B, SET | UIE | H24)
    assert rd(m, REG_B) == SET | H24
    wr(m, REG_A, 0x20)
    m.run(5 * HZ)
    assert rd(m, REG_C) == 0x00  # no update cycles while SET is 1


def test_update_in_progress_window() -> None:
    for hz in (HZ, 1_000_003):
        m = idle_machine(tick_hz=hz)
        origin = 777
        m.run(origin)
        m.inject(Kind.RTC_TIME, 0, unix(2005, 5, 5))
        window = hz * 244 // 1_000_000
        for k in (1, 2, 60):
            boundary = origin + k * hz
            for t, uip in [(boundary - window - 1, 0), (boundary - window, 1),
                           (boundary - 1, 1), (boundary, 0), (boundary + 1, 0)]:
                m.run(t)
                assert rd(m, REG_A) == 0x26 | uip << 7, (hz, k, t)
                assert m.ticks == t
        wr(m, REG_B, SET | H24)
        m.run(origin + 61 * hz - 1)
        assert rd(m, REG_A) == 0x26


# ---- NVRAM ----

@pytest.mark.parametrize("ram_mb,ext_kb,high", [
    (1, 0, 0), (2, 1024, 0), (15, 14 * 1024, 0), (16, 15 * 1024, 0), (17, 16 * 1024, 16),
    (64, 63 * 1024, 768), (65, 0xFFFF, 784), (256, 0xFFFF, 3840)])
def test_nvram_memory_sizes_and_checksum(ram_mb: int, ext_kb: int, high: int) -> None:
    m = idle_machine(ram_size=ram_mb << 20)
    nv = [rd(m, i) for i in range(128)]
    assert nv[0x10] == 0 and nv[0x12] == 0 and nv[0x14] == 0x00
    assert nv[0x15] | nv[0x16] << 8 == 640
    assert nv[0x17] | nv[0x18] << 8 == ext_kb
    assert nv[0x30] | nv[0x31] << 8 == ext_kb
    assert nv[0x34] | nv[0x35] << 8 == high
    assert nv[0x32] == 0x20
    assert nv[0x2E] << 8 | nv[0x2F] == sum(nv[0x10:0x2E])


def test_nvram_below_640k() -> None:
    m = idle_machine(ram_size=512 << 10)
    assert rd(m, 0x15) | rd(m, 0x16) << 8 == 512
    assert rd(m, 0x17) == rd(m, 0x18) == 0


def test_nvram_writes_persist_and_nmi_bit_keeps_the_index() -> None:
    m = idle_machine()
    for i in range(0x0E, 0x80):
        if i != 0x32:
            wr(m, i, (i * 37 + 5) & 0xFF)
    for i in range(0x0E, 0x80):
        if i != 0x32:
            assert rd(m, i) == (i * 37 + 5) & 0xFF
    m.port_write(0x70, 0x80 | 0x0F)  # NMI disabled, register 0Fh
    assert m.port_read(0x71) == (0x0F * 37 + 5) & 0xFF
    masked = m.devices_state_bytes()
    m.port_write(0x70, 0x0F)
    assert m.port_read(0x71) == (0x0F * 37 + 5) & 0xFF
    assert m.devices_state_bytes() != masked  # the NMI mask bit is device state
    wr(m, REG_C, 0xFF)
    wr(m, REG_D, 0x00)
    assert rd(m, REG_D) == 0x80
    assert rd(m, REG_C) & 0x0F == 0


def test_reset_button_keeps_time_and_nvram_and_clears_enables() -> None:
    m = idle_machine()
    base = unix(2019, 9, 9, 9, 9, 9)
    m.inject(Kind.RTC_TIME, 0, base)
    wr(m, 0x40, 0x5A)
    wr(m, REG_B, H24 | PIE | UIE)
    m.run(3 * HZ + 5)
    m.inject(Kind.RESET)
    assert rd(m, REG_B) == H24
    assert rd(m, 0x40) == 0x5A
    assert time_regs(m) == expected(base + 3)
    assert m.next_deadline is None


# ---- snapshots ----

def test_snapshot_restore_into_a_second_machine() -> None:
    cfg = MachineConfig(ram_size=32 << 20)
    m = Machine(cfg)
    m.write(CODE, IDLE)
    real_mode(m)
    m.port_write(0x21, 0xFF)
    m.port_write(0xA1, 0xFF)
    m.inject(Kind.RTC_TIME, 0, unix(2028, 2, 28, 23, 59, 0))
    m.run(HZ // 3)
    wr(m, 0x50, 0xA5)
    wr(m, 6, 0x02)  # a weekday of the guest's choosing
    wr(m, 1, 0xC0)
    wr(m, 3, 0x00)
    wr(m, 5, 0xC0)
    wr(m, REG_A, 0x2A)  # 64 Hz
    wr(m, REG_B, H24 | DM | PIE | AIE)
    m.port_write(0x70, 0x80 | 0x50)
    m.run(HZ + 12345)  # IRQ 8 high, flags pending
    snap = m.snapshot()
    m2 = Machine(cfg)
    m2.restore(snap)
    assert m2.fingerprint() == m.fingerprint()
    assert m2.next_deadline == m.next_deadline
    assert m2.port_read(0x71) == m.port_read(0x71) == 0xA5
    m.take_events()
    for t in (HZ + 20000, 5 * HZ, 61 * HZ, 61 * HZ + 7, 3 * 86400 * HZ):
        for mm in (m, m2):
            mm.run(t)
        assert [rd(m, i) for i in range(128)] == [rd(m2, i) for i in range(128)]
        assert m.fingerprint() == m2.fingerprint()
        assert m.next_deadline == m2.next_deadline
    ev, ev2 = m.take_events(), m2.take_events()
    assert np.array_equal(ev, ev2) and len(irq8_edges(ev)) > 0


def test_alarm_flag_of_a_disabled_alarm_is_set_exactly_at_the_matching_second() -> None:
    m = idle_machine()
    m.inject(Kind.RTC_TIME, 0, unix(2012, 12, 12, 10, 0, 0))
    for idx, val in [(1, 0x03), (3, 0x00), (5, 0x10)]:  # 10:00:03, AIE stays clear
        wr(m, idx, val)
    wr(m, REG_A, 0x20)
    rd(m, REG_C)
    m.run(3 * HZ - 1)
    assert rd(m, REG_C) == 0x10  # two updates, no alarm yet
    m.run(3 * HZ)
    assert rd(m, REG_C) == 0x30
    m.run(100 * HZ)
    assert rd(m, REG_C) == 0x10
    m.run(86403 * HZ)
    assert rd(m, REG_C) == 0x30  # the next day's 10:00:03 passed in between
    assert m.next_deadline is None
