"""The 8042 keyboard controller and its PS/2 keyboard: controller commands, keyboard commands,
key codes in set 2 and set 1 (keyboard set 1 and 8042 translation), IRQ 1 edges, A20 through
the output port, the reset pulse, and snapshots."""

from __future__ import annotations

from aero.events import Kind, ResetCause
from aero.machine import Machine, MachineConfig, Segment, StopReason

DATA, CMD = 0x60, 0x64
ST_OBF, ST_SYS, ST_A2, ST_UNLOCKED, ST_AUX, ST_TIMEOUT = 0x01, 0x04, 0x08, 0x10, 0x20, 0x40

KEY_A = 0x1C
KEY_F7 = 0x83
KEY_RCTRL = 0xE014
KEY_UP = 0xE075
KEY_LEFT = 0xE06B
KEY_PRTSC = 0xE07C
KEY_PAUSE = 0xE077


def drain(m: Machine) -> bytes:
    """Every byte the controller has for the host, in order."""
    out = bytearray()
    for _ in range(64):
        if not m.port_read(CMD) & ST_OBF:
            break
        out.append(m.port_read(DATA))
    return bytes(out)


def ctl(m: Machine, cmd: int, data: int | None = None) -> bytes:
    m.port_write(CMD, cmd)
    if data is not None:
        m.port_write(DATA, data)
    return drain(m)


def kbd(m: Machine, *data: int) -> bytes:
    """Send bytes to the keyboard; its replies."""
    out = b""
    for b in data:
        m.port_write(DATA, b)
        out += drain(m)
    return out


def key(m: Machine, code: int, down: bool) -> bytes:
    m.inject(Kind.KEY, code, 1 if down else 0)
    return drain(m)


def command_byte(m: Machine) -> int:
    return ctl(m, 0x20)[0]


def raw_set2(m: Machine) -> None:
    """Keyboard IRQ on, translation off."""
    ctl(m, 0x60, 0x05)
    m.take_events()


def irq1_levels(m: Machine) -> list[int]:
    ev = m.take_events()
    sel = ev[(ev["kind"] == Kind.IRQ) & (ev["a"] == 1)]
    return [int(b) for b in sel["b"]]


def real_mode(m: Machine, code: bytes, ip: int = 0x1000) -> None:
    m.write(ip, code)
    r = m.get_regs()
    r.cs = Segment(0, 0, 0xFFFF, 0x9B)
    for name in ("ds", "es", "ss", "fs", "gs"):
        setattr(r, name, Segment(0, 0, 0xFFFF, 0x93))
    r.eip, r.esp, r.eflags = ip, 0x8000, 2
    r.halted = False
    m.set_regs(r)


# ---- the controller -------------------------------------------------------------------------

def test_power_on_state() -> None:
    m = Machine()
    assert m.port_read(CMD) == ST_SYS | ST_A2 | ST_UNLOCKED
    assert command_byte(m) == 0x45
    assert ctl(m, 0xD0) == bytes([0xCF])  # reset high, A20 on, lines high
    assert m.next_deadline is None
    off = Machine(MachineConfig(a20_enabled=False))
    assert ctl(off, 0xD0)[0] & 0x02 == 0


def test_self_test_sets_the_system_flag() -> None:
    m = Machine()
    ctl(m, 0x60, 0x01)
    assert m.port_read(CMD) & ST_SYS == 0
    assert ctl(m, 0xAA) == b"\x55"
    assert m.port_read(CMD) & ST_SYS
    assert command_byte(m) == 0x05


def test_interface_tests_and_fixed_answers() -> None:
    m = Machine()
    assert ctl(m, 0xAB) == b"\x00"
    assert ctl(m, 0xA9) == b"\x00"
    assert ctl(m, 0xC0) == b"\xA0"
    assert ctl(m, 0xE0) == b"\x00"
    assert ctl(m, 0x12) == b""  # unknown: ignored
    assert m.port_read(CMD) & ST_OBF == 0


def test_status_a2_tracks_the_last_write() -> None:
    m = Machine()
    m.port_write(CMD, 0x60)
    assert m.port_read(CMD) & ST_A2
    m.port_write(DATA, 0x45)
    assert m.port_read(CMD) & ST_A2 == 0


def test_command_byte_and_ram() -> None:
    m = Machine()
    ctl(m, 0x60, 0x21)
    assert command_byte(m) == 0x21
    ctl(m, 0x7F, 0x5A)
    ctl(m, 0x61, 0xC3)
    assert ctl(m, 0x3F) == b"\x5A"
    assert ctl(m, 0x21) == b"\xC3"
    ctl(m, 0xA8)
    assert command_byte(m) == 0x01
    ctl(m, 0xA7)
    ctl(m, 0xAD)
    assert command_byte(m) == 0x31
    ctl(m, 0xAE)
    assert command_byte(m) == 0x21


def test_pending_parameter_is_abandoned_by_a_new_command() -> None:
    m = Machine()
    m.port_write(CMD, 0x60)
    assert ctl(m, 0x20) == b"\x45"
    assert kbd(m, 0xEE) == b"\xEE"  # the next data byte goes to the keyboard
    assert command_byte(m) == 0x45


def test_read_with_nothing_new_returns_the_last_byte() -> None:
    m = Machine()
    assert ctl(m, 0xAB) == b"\x00"
    ctl(m, 0xAA)
    assert m.port_read(CMD) & ST_OBF == 0
    assert m.port_read(DATA) == 0x55


def test_controller_reply_waits_for_the_output_buffer() -> None:
    m = Machine()
    raw_set2(m)
    m.inject(Kind.KEY, KEY_A, 0)  # F0 1C: F0 in the buffer, 1C in the FIFO
    m.port_write(CMD, 0xAA)
    assert drain(m) == b"\xF0\x55\x1C"


def test_d2_and_d3_write_the_output_buffer() -> None:
    m = Machine()
    ctl(m, 0x60, 0x07)  # both IRQs enabled, no translation
    m.take_events()
    m.port_write(CMD, 0xD2)
    m.port_write(DATA, 0xF0)  # not translated: it does not come from the keyboard
    assert m.port_read(CMD) & (ST_OBF | ST_AUX) == ST_OBF
    assert m.port_read(DATA) == 0xF0
    m.port_write(CMD, 0xD3)
    m.port_write(DATA, 0x5A)
    assert m.port_read(CMD) & (ST_OBF | ST_AUX) == ST_OBF | ST_AUX
    m.port_write(CMD, 0xD0)  # the reply waits: the aux byte still occupies the buffer
    assert m.port_read(DATA) == 0x5A
    assert m.port_read(DATA) == 0xEF  # the output-port reply, with the IRQ 12 line (bit 5)
    ev = m.take_events()
    irqs = [(int(e["a"]), int(e["b"])) for e in ev if e["kind"] == Kind.IRQ]
    assert irqs == [(1, 1), (1, 0), (12, 1), (12, 0), (1, 1), (1, 0)]


def test_d4_with_no_mouse_times_out() -> None:
    m = Machine()
    m.port_write(CMD, 0xD4)
    m.port_write(DATA, 0xFF)
    assert m.port_read(CMD) & ST_TIMEOUT
    assert m.port_read(CMD) & ST_OBF == 0
    m.port_write(CMD, 0xAB)
    assert m.port_read(CMD) & ST_TIMEOUT == 0


# ---- the keyboard ---------------------------------------------------------------------------

def test_keyboard_reset_identify_echo_leds() -> None:
    m = Machine()
    raw_set2(m)
    assert kbd(m, 0xFF) == b"\xFA\xAA"
    assert kbd(m, 0xF2) == b"\xFA\xAB\x83"
    assert kbd(m, 0xEE) == b"\xEE"
    assert kbd(m, 0xED, 0x07) == b"\xFA\xFA"
    assert kbd(m, 0xF3, 0x20) == b"\xFA\xFA"
    assert kbd(m, 0x01) == b"\xFE"  # unknown
    assert kbd(m, 0xFE) == b"\xFE"  # resend: the last byte again
    assert kbd(m, 0xEE, 0xFE) == b"\xEE\xEE"


def test_identify_through_translation() -> None:
    m = Machine()  # power-on command byte translates
    assert kbd(m, 0xF2) == b"\xFA\xAB\x41"


def test_scancode_set_get_and_set() -> None:
    m = Machine()
    raw_set2(m)
    # F0h is acknowledged, then its parameter; "get" (00h) adds the set number.
    assert kbd(m, 0xF0, 0x00) == b"\xFA\xFA\x02"
    assert kbd(m, 0xF0, 0x01) == b"\xFA\xFA"
    assert kbd(m, 0xF0, 0x00) == b"\xFA\xFA\x01"
    assert kbd(m, 0xF0, 0x03) == b"\xFA\xFA"  # set 3 not modelled: the set stays
    assert kbd(m, 0xF0, 0x00) == b"\xFA\xFA\x01"
    assert kbd(m, 0xF0, 0x05) == b"\xFA\xFE"
    ctl(m, 0x60, 0x45)  # translation on: the controller translates the answer
    assert kbd(m, 0xF0, 0x00) == b"\xFA\xFA\x43"
    assert kbd(m, 0xF0, 0x02, 0xF0, 0x00) == b"\xFA\xFA\xFA\xFA\x41"
    assert kbd(m, 0xFF) == b"\xFA\xAA"
    ctl(m, 0x60, 0x05)
    assert kbd(m, 0xF0, 0x00) == b"\xFA\xFA\x02"  # reset restored set 2


def test_command_in_place_of_a_parameter() -> None:
    m = Machine()
    raw_set2(m)
    assert kbd(m, 0xED, 0xEE) == b"\xFA\xEE"
    assert kbd(m, 0xED, 0xFE, 0x02) == b"\xFA\xFA\xFA"  # resend keeps the command waiting


def test_writing_to_the_keyboard_enables_the_interface() -> None:
    m = Machine()
    raw_set2(m)
    ctl(m, 0xAD)
    assert key(m, KEY_A, True) == b""  # dropped while the interface is disabled
    assert kbd(m, 0xEE) == b"\xEE"
    assert command_byte(m) & 0x10 == 0


def test_replies_wait_while_the_interface_is_disabled() -> None:
    m = Machine()
    raw_set2(m)
    m.port_write(DATA, 0xF2)
    m.port_write(CMD, 0xAD)
    assert drain(m) == b"\xFA"  # already in the output buffer
    assert ctl(m, 0xAE) == b"\xAB\x83"


# ---- keys -----------------------------------------------------------------------------------

def test_keys_in_set_2() -> None:
    m = Machine()
    raw_set2(m)
    m.inject(Kind.KEY, KEY_A, 1)
    assert m.port_read(CMD) & ST_OBF
    assert m.port_read(DATA) == 0x1C
    assert m.port_read(CMD) & ST_OBF == 0
    assert key(m, KEY_A, False) == b"\xF0\x1C"
    assert key(m, KEY_RCTRL, True) == b"\xE0\x14"
    assert key(m, KEY_RCTRL, False) == b"\xE0\xF0\x14"
    assert key(m, KEY_UP, True) + key(m, KEY_UP, False) == b"\xE0\x75\xE0\xF0\x75"
    assert key(m, KEY_LEFT, True) == b"\xE0\x6B"
    assert key(m, KEY_F7, True) == b"\x83"


def test_keys_in_set_1_through_translation() -> None:
    m = Machine()
    assert command_byte(m) & 0x40
    assert key(m, KEY_A, True) == b"\x1E"
    assert key(m, KEY_A, False) == b"\x9E"
    assert key(m, KEY_RCTRL, True) + key(m, KEY_RCTRL, False) == b"\xE0\x1D\xE0\x9D"
    assert key(m, KEY_UP, True) + key(m, KEY_UP, False) == b"\xE0\x48\xE0\xC8"
    assert key(m, KEY_LEFT, True) == b"\xE0\x4B"
    assert key(m, KEY_F7, True) + key(m, KEY_F7, False) == b"\x41\xC1"
    assert key(m, 0x76, True) == b"\x01"  # Esc


def test_keyboard_in_set_1_without_translation() -> None:
    m = Machine()
    raw_set2(m)
    assert kbd(m, 0xF0, 0x01) == b"\xFA\xFA"
    assert key(m, KEY_A, True) + key(m, KEY_A, False) == b"\x1E\x9E"
    assert key(m, KEY_RCTRL, False) == b"\xE0\x9D"


def test_print_screen_and_pause() -> None:
    m = Machine()
    raw_set2(m)
    assert key(m, KEY_PRTSC, True) == b"\xE0\x12\xE0\x7C"
    assert key(m, KEY_PRTSC, False) == b"\xE0\xF0\x7C\xE0\xF0\x12"
    assert key(m, KEY_PAUSE, True) == bytes.fromhex("E11477E1F014F077")
    assert key(m, KEY_PAUSE, False) == b""
    ctl(m, 0x60, 0x45)
    assert key(m, KEY_PRTSC, True) == b"\xE0\x2A\xE0\x37"
    assert key(m, KEY_PRTSC, False) == b"\xE0\xB7\xE0\xAA"
    assert key(m, KEY_PAUSE, True) == bytes.fromhex("E11D45E19DC5")


def test_keys_dropped_while_scanning_is_disabled() -> None:
    m = Machine()
    raw_set2(m)
    assert kbd(m, 0xF5) == b"\xFA"
    assert key(m, KEY_A, True) == b""
    assert kbd(m, 0xF4) == b"\xFA"
    assert key(m, KEY_A, True) == b"\x1C"


def test_fifo_overrun() -> None:
    m = Machine()
    raw_set2(m)
    m.inject(Kind.KEY, KEY_A, 1)  # into the output buffer
    for _ in range(20):
        m.inject(Kind.KEY, KEY_A, 0)  # two bytes each
    m.inject(Kind.KEY, KEY_A, 1)  # lost after the overrun
    got = drain(m)
    assert got == b"\x1C" + b"\xF0\x1C" * 7 + b"\x00"
    assert key(m, KEY_A, True) == b"\x1C"  # drained: keys flow again


# ---- IRQ 1 ----------------------------------------------------------------------------------

def test_irq1_rises_once_per_byte() -> None:
    m = Machine()
    raw_set2(m)
    m.inject(Kind.KEY, KEY_RCTRL, 0)  # E0 F0 14
    assert irq1_levels(m) == [1]
    assert drain(m) == b"\xE0\xF0\x14"
    assert irq1_levels(m) == [0, 1, 0, 1, 0]
    assert kbd(m, 0xF2) == b"\xFA\xAB\x83"
    assert irq1_levels(m).count(1) == 3


def test_no_irq1_with_the_enable_bit_clear() -> None:
    m = Machine()
    ctl(m, 0x60, 0x04)
    m.take_events()
    assert key(m, KEY_RCTRL, False) == b"\xE0\xF0\x14"
    assert kbd(m, 0xFF) == b"\xFA\xAA"
    assert irq1_levels(m) == []
    m.inject(Kind.KEY, KEY_A, 1)
    m.port_write(CMD, 0x60)
    m.port_write(DATA, 0x05)  # enabling with a byte waiting raises the line
    assert irq1_levels(m) == [1]
    m.port_write(CMD, 0xD0)  # the reply waits behind the key byte
    assert m.port_read(DATA) == 0x1C
    assert m.port_read(DATA) & 0x10  # output port bit 4: IRQ 1 was high when D0h ran


def test_irq1_reaches_the_cpu_through_the_pic() -> None:
    m = Machine()
    # ICW1-4 for the master (vectors 08h-0Fh), unmask IRQ 1 only; the guest halts with IF=1
    # and its handler reads the scan code into BL and exits.
    for port, val in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFD),
                      (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01), (0xA1, 0xFF)):
        m.port_write(port, val)
    m.write(0x09 * 4, bytes([0x00, 0x20, 0x00, 0x00]))  # IRQ 1 -> 0000:2000
    m.write(0x2000, bytes([0xE4, 0x60, 0x88, 0xC3, 0xB0, 0x20, 0xE6, 0x20, 0xF4]))
    real_mode(m, bytes([0xFB, 0xF4, 0xEB, 0xFD]))  # sti; hlt; jmp hlt
    m.run(m.ticks + 50)
    m.inject(Kind.KEY, KEY_A, 1)
    m.run(m.ticks + 50)
    assert m.get_regs().ebx & 0xFF == 0x1E


# ---- A20 and reset --------------------------------------------------------------------------

# mov ax,FFFFh; mov ds,ax; mov byte [10h],5Ah; xor ax,ax; mov ds,ax; mov al,[0]; hlt
A20_PROBE = bytes([0xB8, 0xFF, 0xFF, 0x8E, 0xD8, 0xC6, 0x06, 0x10, 0x00, 0x5A,
                   0x31, 0xC0, 0x8E, 0xD8, 0xA0, 0x00, 0x00, 0xF4])


def a20_from_8042_only(m: Machine) -> None:
    """Port 92h's A20 bit ORs into the gate: clear it so the 8042 alone decides."""
    m.port_write(0x92, 0x00)


def probe_a20(m: Machine) -> bool:
    """Run the probe: True when FFFF:0010 reached 100000h rather than wrapping to 0."""
    m.write(0, b"\x00")
    m.write(0x100000, b"\x00")
    real_mode(m, A20_PROBE)
    m.run(m.ticks + 100)
    low, high = m.read(0, 1)[0], m.read(0x100000, 1)[0]
    assert (low, high) in ((0x5A, 0), (0, 0x5A))
    assert m.get_regs().eax & 0xFF == low
    return high == 0x5A


def test_a20_through_the_output_port() -> None:
    m = Machine()
    a20_from_8042_only(m)
    assert probe_a20(m)
    ctl(m, 0xD1, 0x01)  # A20 off, reset line high
    assert not probe_a20(m)
    assert ctl(m, 0xD0)[0] & 0x03 == 0x01
    ctl(m, 0xDF)
    assert probe_a20(m)
    assert ctl(m, 0xD0)[0] & 0x02
    ctl(m, 0xDD)
    assert not probe_a20(m)
    ctl(m, 0xD1, 0x03)
    assert probe_a20(m)
    assert not any(m.take_events()["kind"] == Kind.GUEST_RESET)


def test_a20_off_at_power_on_when_configured() -> None:
    m = Machine(MachineConfig(a20_enabled=False))
    assert not probe_a20(m)
    ctl(m, 0xDF)
    assert probe_a20(m)


def _reset_rom() -> bytes:
    rom = bytearray(b"\xF4" * 4096)  # hlt everywhere, in particular at F000:FFF0
    return bytes(rom)


def test_command_fe_pulses_reset() -> None:
    m = Machine()
    m.load_rom(_reset_rom())
    # mov al,FEh; out 64h,al; jmp $
    real_mode(m, bytes([0xB0, 0xFE, 0xE6, 0x64, 0xEB, 0xFE]))
    m.take_events()
    stop = m.run(m.ticks + 1000)
    assert stop == StopReason.HALT
    ev = m.take_events()
    resets = ev[ev["kind"] == Kind.GUEST_RESET]
    assert len(resets) == 1 and resets[0]["a"] == ResetCause.KBC
    r = m.get_regs()
    assert (r.cs.selector, r.eip, r.halted) == (0xF000, 0xFFF1, True)
    assert m.port_read(CMD) & ST_SYS  # the 8042 keeps its state: a warm start


def test_output_port_reset_bit_and_pulse_commands() -> None:
    for cmds in ((0xD1, 0x02), (0xF0,), (0xFE,)):
        m = Machine()
        m.load_rom(_reset_rom())
        real_mode(m, bytes([0xEB, 0xFE]))
        ctl(m, *cmds)
        m.take_events()
        m.run(m.ticks + 100)
        ev = m.take_events()
        assert list(ev[ev["kind"] == Kind.GUEST_RESET]["a"]) == [ResetCause.KBC], cmds
        assert ctl(m, 0xD0)[0] & 0x01
    m = Machine()
    real_mode(m, bytes([0xEB, 0xFE]))
    ctl(m, 0xFF)  # bit 0 set: no line pulsed
    ctl(m, 0xD1, 0x03)
    m.run(m.ticks + 100)
    assert not any(m.take_events()["kind"] == Kind.GUEST_RESET)


# ---- snapshots ------------------------------------------------------------------------------

def test_snapshot_restore_keeps_queued_bytes() -> None:
    a = Machine()
    a.port_write(DATA, 0xF2)  # FA in the buffer, AB 83 in the FIFO
    a.inject(Kind.KEY, KEY_RCTRL, 0)
    a.port_write(CMD, 0x60)  # a command waiting for its parameter
    snap = a.snapshot()
    b = Machine()
    b.restore(snap)
    assert a.fingerprint() == b.fingerprint()
    assert a.devices_state_bytes() == b.devices_state_bytes()
    for m in (a, b):
        m.port_write(DATA, 0x05)
    got_a, got_b = drain(a), drain(b)
    assert got_a == got_b == b"\xFA\xAB\x83\xE0\xF0\x14"  # translation now off
    assert command_byte(a) == command_byte(b) == 0x05
    assert a.fingerprint() == b.fingerprint()


def _kbc_block(blob: bytes) -> int:
    """Offset of the 8042's serialized RAM in a snapshot whose RAM bytes 1-31 are 1..31."""
    pattern = bytes(range(1, 32))
    at = blob.find(pattern)
    assert at > 0 and blob.find(pattern, at + 1) < 0
    return at - 1


def test_damaged_snapshot_values_are_clamped() -> None:
    m = Machine()
    for i in range(1, 32):
        ctl(m, 0x60 + i, i)
    raw_set2(m)
    m.inject(Kind.KEY, KEY_RCTRL, 0)
    snap = bytearray(m.snapshot())
    ram = _kbc_block(bytes(snap))
    fields = ram + 32  # outport, obuf, obf, obf_aux, a2, timeout, pending_cmd, reply_src,
    # reply, xlat_break, fifo_head, fifo_len, kbd_cmd, scanning, scancode_set, ...
    assert snap[fields + 11] == 2  # F0 14 wait in the FIFO
    snap[fields + 7] = 0x77  # reply source out of range
    snap[fields + 10] = 0xFF  # FIFO head out of range
    snap[fields + 11] = 0xFF  # FIFO length out of range
    snap[fields + 14] = 0x09  # no such scancode set
    b = Machine()
    b.restore(bytes(snap))
    state = b.devices_state_bytes()
    at = _kbc_block(state) + 32
    assert (state[at + 7], state[at + 10], state[at + 11], state[at + 14]) == (0, 15, 16, 2)
    assert len(drain(b)) == 17  # the buffered E0, then 16 FIFO bytes
    assert key(b, KEY_A, True) == b"\x1C"


def test_ram_is_part_of_the_device_state() -> None:
    a, b = Machine(), Machine()
    ctl(a, 0x7F, 0x99)
    ctl(b, 0x7F, 0x00)
    sa, sb = a.devices_state_bytes(), b.devices_state_bytes()
    diff = [i for i in range(len(sa)) if sa[i] != sb[i]]
    assert len(diff) == 1 and sa[diff[0]] == 0x99
