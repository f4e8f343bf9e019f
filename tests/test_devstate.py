"""The device-state decoder follows the core's serialization."""

from __future__ import annotations

from aero import devstate
from aero.machine import Machine, MachineConfig


def test_decode_names_the_fields_the_devices_hold() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.port_write(0x20, 0x11)  # ICW1: the master waits for ICW2
    m.port_write(0x21, 0x30)
    m.port_write(0x43, 0x34)  # PIT channel 0, mode 2, LSB then MSB
    m.port_write(0x40, 0x34)
    m.port_write(0x40, 0x12)
    m.port_write(0x3F9, 0x05)  # COM1 IER
    m.port_write(0x2FF, 0x77)  # COM2 scratch
    m.port_write(0x70, 0x0E)
    m.port_write(0x71, 0xAB)  # CMOS byte 0Eh
    m.port_write(0x92, 0x02)
    d = devstate.decode(m.devices_state_bytes())
    assert d["pic"]["master_vector_base"] == 0x30 and d["pic"]["master_init_step"] == 2
    assert d["pit"]["ch0_mode"] == 2 and d["pit"]["ch0_cr"] == 0x1234
    assert d["com1"]["ier"] == 0x05 and d["com2"]["scr"] == 0x77
    assert d["rtc"]["cmos"][0x0E] == 0xAB and d["rtc"]["index"] == 0x0E
    assert d["platform"]["port92"] == 0x02
    assert d["kbc"]["ram"][0] == 0x45  # the power-on command byte


def test_differences_name_device_and_field() -> None:
    a = Machine(MachineConfig(ram_size=1 << 20))
    b = Machine(MachineConfig(ram_size=1 << 20))
    b.port_write(0x3FF, 0x42)
    diff = devstate.differences(a.devices_state_bytes(), b.devices_state_bytes())
    assert diff == {"com1": {"scr": (0, 0x42)}}


def test_no_devices_decodes_empty() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20, devices=False))
    assert devstate.decode(m.devices_state_bytes()) == {}
