"""The cascaded 8259A pair (Intel 8259A datasheet): initialisation, masking, IRR/ISR reads,
priorities and rotation, EOI modes, special mask, poll, edge/level triggering, the cascade,
and interrupt acknowledges through a real-mode guest.

IRQ lines are driven through real devices: IRQ 0 by the PIT's channel-0 OUT (a mode 3
control word drives it high, a mode 0 one low), IRQ 1 and 12 by the 8042's output buffer
(commands D2h/D3h fill it, a read of port 60h empties it), IRQ 3 and 4 by the UARTs' THRE
interrupt (IER bit 1 with MCR.OUT2). Acknowledges without a CPU go through poll mode, which
the datasheet defines as an acknowledge."""

from __future__ import annotations

import pytest

from aero.events import Kind
from aero.machine import Machine, MachineConfig, Segment

M_CMD, M_DATA, S_CMD, S_DATA = 0x20, 0x21, 0xA0, 0xA1
READ_IRR, READ_ISR, POLL = 0x0A, 0x0B, 0x0C
EOI, SPECIFIC_EOI, ROTATE_EOI, ROTATE_SPECIFIC, SET_PRIORITY = 0x20, 0x60, 0xA0, 0xE0, 0xC0


def irq(m: Machine, line: int, level: int) -> None:
    """Drive an ISA IRQ line through the device wired to it."""
    if line == 0:
        m.port_write(0x43, 0x36 if level else 0x30)
    elif line in (1, 12):
        if level:
            m.port_write(0x64, 0x60)
            m.port_write(0x60, 0x47)  # command byte: keyboard and aux interrupts on
            m.port_write(0x64, 0xD2 if line == 1 else 0xD3)
            m.port_write(0x60, 0x5A)
        else:
            m.port_read(0x60)
    elif line in (3, 4):
        base = 0x3F8 if line == 4 else 0x2F8
        m.port_write(base + 4, 0x08)  # OUT2 gates the IRQ
        m.port_write(base + 1, 0x02 if level else 0x00)  # THRE interrupt (THR is empty)
    else:
        raise ValueError(line)


def init(m: Machine, base_m: int = 0x08, base_s: int = 0x70, icw4: int = 0x01,
         ltim: bool = False) -> None:
    icw1 = 0x11 | (0x08 if ltim else 0)
    for cmd, data, base, icw3 in ((M_CMD, M_DATA, base_m, 0x04), (S_CMD, S_DATA, base_s, 0x02)):
        m.port_write(cmd, icw1)
        m.port_write(data, base)
        m.port_write(data, icw3)
        m.port_write(data, icw4)


def machine() -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20))
    init(m)
    m.take_events()
    return m


def reg(m: Machine, ocw3: int, cmd: int = M_CMD) -> int:
    m.port_write(cmd, ocw3)
    return m.port_read(cmd)


def poll(m: Machine, cmd: int = M_CMD) -> int:
    m.port_write(cmd, POLL)
    return m.port_read(cmd)


def pulse(m: Machine, line: int) -> None:
    irq(m, line, 1)
    irq(m, line, 0)


# ---- initialisation ------------------------------------------------------------------------

def test_icw1_resets_mask_and_in_service_and_icw4_is_optional() -> None:
    m = machine()
    m.port_write(M_DATA, 0xA5)
    assert m.port_read(M_DATA) == 0xA5
    pulse(m, 4)
    assert poll(m) == 0x84
    assert reg(m, READ_ISR) == 0x10
    # ICW1 without IC4, cascade mode: ICW2, ICW3, then the next data write is OCW1.
    m.port_write(M_CMD, 0x10)
    assert m.port_read(M_DATA) == 0x00  # ICW1 clears the IMR
    m.port_write(M_DATA, 0x20)
    m.port_write(M_DATA, 0x04)
    m.port_write(M_DATA, 0x3C)
    assert m.port_read(M_DATA) == 0x3C
    assert reg(m, READ_ISR) == 0x00  # and the ISR; reads return the IRR again (OCW3 reset)
    # Single mode (SNGL) without IC4: ICW2, then OCW1 straight away.
    m.port_write(S_CMD, 0x12)
    m.port_write(S_DATA, 0x50)
    m.port_write(S_DATA, 0x81)
    assert m.port_read(S_DATA) == 0x81


def test_icw1_clears_latched_edges_and_read_register_selection() -> None:
    m = machine()
    pulse(m, 3)
    assert reg(m, READ_IRR) & 0x08
    init(m)
    assert reg(m, READ_IRR) & 0x08 == 0  # the edge latch does not survive ICW1
    irq(m, 4, 1)
    assert m.port_read(M_CMD) & 0x10  # after ICW1, reads return the IRR
    # Edge mode: a line held high across ICW1 requests again only after a new rising edge.
    init(m)
    assert reg(m, READ_IRR) & 0x10 == 0
    irq(m, 4, 0)
    irq(m, 4, 1)
    assert reg(m, READ_IRR) & 0x10


@pytest.mark.parametrize(("base_m", "base_s"), [(0x08, 0x70), (0x20, 0x28), (0xF8, 0x57)])
def test_vector_bases_of_icw2_reach_the_cpu(base_m: int, base_s: int) -> None:
    m = guest(base_m, base_s)
    irq(m, 4, 1)
    irq(m, 12, 1)
    m.run(m.ticks + 200)
    assert intas(m) == [(base_s & 0xF8) | 4, (base_m & 0xF8) | 4]


# ---- masking, IRR and ISR ------------------------------------------------------------------

def test_imr_masks_requests_without_losing_them() -> None:
    m = machine()
    m.port_write(M_DATA, 0x10)
    irq(m, 4, 1)
    assert reg(m, READ_IRR) & 0x10  # the IRR holds it
    assert poll(m) == 0x00          # but it is not presented
    m.port_write(M_DATA, 0x00)
    assert poll(m) == 0x84
    assert reg(m, READ_ISR) == 0x10
    assert reg(m, READ_IRR) & 0x10 == 0  # the acknowledge consumed the edge


def test_ocw3_read_selection_persists_until_changed() -> None:
    m = machine()
    pulse(m, 3)
    pulse(m, 4)
    assert poll(m) == 0x83
    m.port_write(M_CMD, READ_ISR)
    assert [m.port_read(M_CMD) for _ in range(2)] == [0x08, 0x08]
    m.port_write(M_CMD, 0x08)  # OCW3 without RR: selection unchanged
    assert m.port_read(M_CMD) == 0x08
    m.port_write(M_CMD, READ_IRR)
    assert m.port_read(M_CMD) & 0x18 == 0x10
    assert m.port_read(M_DATA) == 0x00  # the data port reads the IMR whatever OCW3 said


# ---- priorities, EOI, rotation ---------------------------------------------------------------

def test_fully_nested_priority_and_non_specific_eoi() -> None:
    m = machine()
    for line in (4, 3, 1):
        pulse(m, line)
    assert poll(m) == 0x81
    assert poll(m) == 0x00  # IR3 and IR4 do not outrank IR1 in service
    pulse(m, 0)
    assert poll(m) == 0x80  # IR0 does: nested
    assert reg(m, READ_ISR) == 0x03
    m.port_write(M_CMD, EOI)  # clears the highest in service: IR0
    assert reg(m, READ_ISR) == 0x02
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x83
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x84
    m.port_write(M_CMD, EOI)
    assert reg(m, READ_ISR) == 0x00
    m.port_write(M_CMD, EOI)  # nothing in service: no effect
    assert poll(m) == 0x00


def test_specific_eoi_clears_the_named_level() -> None:
    m = machine()
    pulse(m, 4)
    assert poll(m) == 0x84
    pulse(m, 1)
    assert poll(m) == 0x81
    assert reg(m, READ_ISR) == 0x12
    m.port_write(M_CMD, SPECIFIC_EOI | 4)  # the lower-priority level, not the highest
    assert reg(m, READ_ISR) == 0x02
    m.port_write(M_CMD, 0x40)  # OCW2 010: no operation
    assert reg(m, READ_ISR) == 0x02


def test_set_priority_command() -> None:
    m = machine()
    m.port_write(M_CMD, SET_PRIORITY | 4)  # IR4 lowest, IR5 highest
    for line in (1, 3, 4):
        pulse(m, line)
    assert poll(m) == 0x81  # IR5-7 and IR0 idle: IR1 is the next in the rotated order
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x83
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x84
    m.port_write(M_CMD, EOI)
    m.port_write(M_CMD, SET_PRIORITY | 0)  # IR0 lowest: IR1 highest, so IR3 beats IR0
    pulse(m, 0)
    pulse(m, 3)
    assert poll(m) == 0x83


def test_rotate_on_non_specific_eoi() -> None:
    m = machine()
    pulse(m, 1)
    assert poll(m) == 0x81
    m.port_write(M_CMD, ROTATE_EOI)  # IR1 becomes lowest: IR2 highest
    assert reg(m, READ_ISR) == 0x00
    pulse(m, 0)
    pulse(m, 3)
    assert poll(m) == 0x83
    # IR0 (rank 6 now) cannot interrupt IR3 in service.
    assert poll(m) == 0x00
    m.port_write(M_CMD, ROTATE_EOI)  # IR3 lowest: IR4 highest, IR0 ranks above IR1
    assert poll(m) == 0x80


def test_rotate_on_specific_eoi() -> None:
    m = machine()
    pulse(m, 3)
    assert poll(m) == 0x83
    m.port_write(M_CMD, ROTATE_SPECIFIC | 3)
    assert reg(m, READ_ISR) == 0x00
    pulse(m, 0)
    pulse(m, 4)
    assert poll(m) == 0x84  # IR4 follows the lowest, IR3


@pytest.mark.parametrize("rotate", [False, True])
def test_automatic_eoi(rotate: bool) -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    init(m, icw4=0x03)  # 8086 mode, AEOI
    m.port_write(M_CMD, 0x80 if rotate else 0x00)  # rotate in AEOI mode: set / clear
    pulse(m, 1)
    assert poll(m) == 0x81
    assert reg(m, READ_ISR) == 0x00  # no level stays in service
    pulse(m, 0)
    pulse(m, 3)
    # Rotating, IR1 became lowest, so IR3 (rank 1) beats IR0 (rank 6).
    assert poll(m) == (0x83 if rotate else 0x80)


# ---- special mask, poll ------------------------------------------------------------------

def test_special_mask_mode_lets_lower_levels_in() -> None:
    m = machine()
    pulse(m, 1)
    assert poll(m) == 0x81
    pulse(m, 4)
    assert poll(m) == 0x00  # IR4 is below IR1 in service
    m.port_write(M_DATA, 0x02)  # mask IR1...
    m.port_write(M_CMD, 0x68)  # ...and set special mask mode
    assert poll(m) == 0x84
    assert reg(m, READ_ISR) == 0x12
    pulse(m, 3)
    m.port_write(M_CMD, 0x48)  # reset special mask mode: IR1 in service blocks IR3 again
    assert poll(m) == 0x00
    m.port_write(M_DATA, 0x00)
    assert poll(m) == 0x00
    m.port_write(M_CMD, SPECIFIC_EOI | 1)
    assert poll(m) == 0x83  # IR3 outranks IR4, still in service


def test_poll_is_one_shot_and_reports_the_cascade() -> None:
    m = machine()
    assert poll(m) == 0x00
    pulse(m, 4)
    m.port_write(M_CMD, POLL)
    assert m.port_read(M_CMD) == 0x84
    assert m.port_read(M_CMD) == 0x00  # the next read is an IRR read again
    irq(m, 12, 1)
    assert reg(m, READ_IRR) & 0x04
    assert poll(m) == 0x82  # IR4 in service, but the cascade (IR2) outranks it
    assert poll(m, S_CMD) == 0x84  # ...the slave its IR4 (IRQ 12)
    assert reg(m, READ_ISR) == 0x14 and reg(m, READ_ISR, S_CMD) == 0x10
    assert poll(m, S_CMD) == 0x00


# ---- edge and level triggering -----------------------------------------------------------------

def test_edge_line_latches_and_does_not_repeat_while_high() -> None:
    m = machine()
    pulse(m, 4)  # gone before any acknowledge: the latch keeps the request
    assert reg(m, READ_IRR) & 0x10
    irq(m, 4, 1)
    assert poll(m) == 0x84
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x00  # still high, but no new edge
    irq(m, 4, 0)
    irq(m, 4, 1)
    assert poll(m) == 0x84


def test_elcr_level_line_requests_while_high() -> None:
    m = machine()
    assert m.port_read(0x4D0) == 0 and m.port_read(0x4D1) == 0
    m.port_write(0x4D0, 0xFF)
    m.port_write(0x4D1, 0xFF)
    # IRQ 0, 1, 2, 8 and 13 are always edge-triggered.
    assert m.port_read(0x4D0) == 0xF8 and m.port_read(0x4D1) == 0xDE
    m.port_write(0x4D0, 0x18)
    pulse(m, 4)
    assert reg(m, READ_IRR) & 0x10 == 0  # a level request goes away with the line
    irq(m, 4, 1)
    assert poll(m) == 0x84
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x84  # still high after the EOI: requests again
    m.port_write(M_CMD, EOI)
    irq(m, 4, 0)
    assert poll(m) == 0x00
    # Switching a high line to level mode makes it request.
    irq(m, 3, 1)
    assert poll(m) == 0x83
    m.port_write(M_CMD, EOI)
    m.port_write(0x4D0, 0x00)
    m.port_write(0x4D0, 0x08)
    assert reg(m, READ_IRR) & 0x08


def test_icw1_ltim_makes_every_line_level_triggered() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    init(m, ltim=True)
    pulse(m, 0)  # IRQ 0 is edge-only in the ELCR, but LTIM overrides it
    assert reg(m, READ_IRR) & 0x01 == 0
    irq(m, 0, 1)
    assert poll(m) == 0x80
    m.port_write(M_CMD, EOI)
    assert poll(m) == 0x80
    m.port_write(M_CMD, EOI)
    # A line already high when ICW1 selects level mode requests at once: in level mode the
    # request is the line itself (only edge latches are reset by ICW1).
    irq(m, 4, 1)
    init(m, ltim=False)
    assert reg(m, READ_IRR) & 0x10 == 0
    init(m, ltim=True)
    assert reg(m, READ_IRR) & 0x11 == 0x11
    assert poll(m) == 0x80


# ---- the cascade --------------------------------------------------------------------------

def test_slave_requests_appear_on_master_ir2() -> None:
    m = machine()
    m.port_write(S_DATA, 0x10)  # masked on the slave: the master sees nothing
    irq(m, 12, 1)
    assert reg(m, READ_IRR, S_CMD) & 0x10
    assert reg(m, READ_IRR) & 0x04 == 0
    m.port_write(S_DATA, 0x00)
    assert reg(m, READ_IRR) & 0x04
    m.port_write(M_DATA, 0x04)  # masking IR2 on the master masks the whole slave
    assert poll(m) == 0x00
    m.port_write(M_DATA, 0x00)
    assert poll(m) == 0x82


# ---- interrupt acknowledge through a guest -------------------------------------------------

MAIN = 0x1000
MASTER_ISR, SLAVE_ISR = 0x1100, 0x1200
HALT = bytes([0xFB, 0xF4, 0xEB, 0xFD])  # sti; hlt; jmp hlt
# mov al,20h; out 20h,al; iret  /  mov al,20h; out 0A0h,al; out 20h,al; iret
MASTER_EOI = bytes([0xB0, 0x20, 0xE6, 0x20, 0xCF])
SLAVE_EOI = bytes([0xB0, 0x20, 0xE6, 0xA0, 0xE6, 0x20, 0xCF])


def guest(base_m: int = 0x08, base_s: int = 0x70, icw4: int = 0x01) -> Machine:
    """A real-mode guest with IF clear at `sti; hlt`, every vector of both PICs pointing to a
    handler that sends the EOI; lines are driven from outside before it runs."""
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.write(MAIN, HALT)
    m.write(MASTER_ISR, MASTER_EOI)
    m.write(SLAVE_ISR, SLAVE_EOI)
    for v in range(8):
        m.write(4 * ((base_m & 0xF8) + v), MASTER_ISR.to_bytes(2, "little") + bytes(2))
    for v in range(8):
        m.write(4 * ((base_s & 0xF8) + v), SLAVE_ISR.to_bytes(2, "little") + bytes(2))
    init(m, base_m, base_s, icw4)
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
    r.eip, r.esp, r.eflags, r.halted = MAIN, 0x8000, 0x2, False
    m.set_regs(r)
    m.take_events()
    return m


def intas(m: Machine) -> list[int]:
    ev = m.take_events()
    return [int(e["a"]) for e in ev if e["kind"] == Kind.INTA]


def test_guest_takes_interrupts_in_priority_order() -> None:
    m = guest()
    irq(m, 4, 1)
    irq(m, 3, 1)
    pulse(m, 12)  # IRQ 1 and 12 share the 8042's buffer: the edge stays latched
    irq(m, 1, 1)
    irq(m, 0, 1)
    m.run(m.ticks + 500)
    # IRQ 0, 1, then the slave on IR2 (IRQ 12), then 3 and 4.
    assert intas(m) == [0x08, 0x09, 0x74, 0x0B, 0x0C]
    assert reg(m, READ_ISR) == 0 and reg(m, READ_ISR, S_CMD) == 0
    assert m.get_regs().halted


def test_guest_nested_interrupt_waits_for_eoi() -> None:
    m = guest()
    # IR4's handler never sends an EOI: IR5 (lower priority) is held off, IR1 is not.
    m.write(4 * 0x0C, (MAIN + 0x40).to_bytes(2, "little") + bytes(2))
    m.write(MAIN + 0x40, bytes([0xCF]))  # iret
    irq(m, 4, 1)
    m.run(m.ticks + 100)
    assert intas(m) == [0x0C]
    irq(m, 0, 1)  # IRQ 0 outranks IR4 in service
    m.run(m.ticks + 100)
    assert intas(m) == [0x08]
    assert reg(m, READ_ISR) == 0x10
    m.port_write(0x2F8 + 4, 0x08)
    irq(m, 3, 1)  # IR3 outranks IR4 too
    m.run(m.ticks + 100)
    assert intas(m) == [0x0B]
    m.port_write(M_CMD, EOI)
    assert intas(m) == []


def test_guest_aeoi_leaves_nothing_in_service() -> None:
    m = guest(icw4=0x03)
    m.write(MASTER_ISR, bytes([0xCF]))  # iret, no EOI
    irq(m, 4, 1)
    irq(m, 3, 1)
    m.run(m.ticks + 200)
    assert intas(m) == [0x0B, 0x0C]
    assert reg(m, READ_ISR) == 0


def test_request_withdrawn_before_the_cpu_can_take_it() -> None:
    """A level-triggered request that goes away while IF is clear is never acknowledged: the
    model drops INTR with it, so the CPU sees no interrupt (and no spurious IRQ 7)."""
    m = guest()
    m.port_write(0x4D0, 0x10)  # IRQ 4 level-triggered
    irq(m, 4, 1)
    irq(m, 4, 0)
    m.run(m.ticks + 200)
    assert intas(m) == []
    assert reg(m, READ_ISR) == 0
    # An edge-triggered pulse stays latched until the acknowledge: it is delivered.
    pulse(m, 3)
    m.run(m.ticks + 200)
    assert intas(m) == [0x0B]


def test_rtc_irq8_through_the_slave() -> None:
    m = guest()
    m.port_write(0x70, 0x0A)
    m.port_write(0x71, 0x26)  # 32.768 kHz time base, 1024 Hz periodic rate
    m.port_write(0x70, 0x0B)
    m.port_write(0x71, 0x42)  # periodic interrupt enable, 24 h
    # The handler reads register C (clearing the flag, so the line falls) and sends EOIs.
    m.write(SLAVE_ISR, bytes([0xB0, 0x0C, 0xE6, 0x70, 0xE4, 0x71]) + SLAVE_EOI)
    m.run(m.ticks + m.config.tick_hz // 100)  # 10 ms: about 10 periodic interrupts
    v = intas(m)
    assert set(v) == {0x70} and 9 <= len(v) <= 11
