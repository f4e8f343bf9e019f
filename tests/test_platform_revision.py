"""The platform revision: a machine is built as the revision its configuration names, a
trace records the revision it was recorded on, and a trace from before revisions were
recorded either replays on the old platform (``--platform 0``) or diverges with a message
naming the revision, never silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aero.traces.container import TraceWriter, open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, ReplayError, load_contents
from procenv import aero_cli

from aero.launch import GuestRef, start_machine, store_image
from aero.machine import PLATFORM_REVISION, Machine, MachineConfig

# Reads PCI 00:01.0's vendor ID low byte (86h from the PIIX3, FFh where it is absent) and
# prints it on the debug console: mov eax,80000800h; mov dx,0CF8h; out dx,eax; mov dx,0CFCh;
# in al,dx; out 0E9h,al; cli; hlt.
PROBE = bytes.fromhex("66b800080080baf80c66efbafc0cece6e9faf4")


@pytest.fixture(autouse=True)
def _stores(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path_factory.getbasetemp() / "images"))
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path_factory.getbasetemp() / "traces"))


def pci_vendor(m: Machine, dev: int, fn: int = 0) -> int:
    m.port_write(0xCF8, 0x8000_0000 | dev << 11 | fn << 8, 4)
    return m.port_read(0xCFC, 4)


def cmos(m: Machine, reg: int) -> int:
    m.port_write(0x70, reg)
    return m.port_read(0x71)


def test_revision_0_has_none_of_the_firmware_devices() -> None:
    old = Machine(MachineConfig(ram_size=1 << 20, platform=0))
    new = Machine(MachineConfig(ram_size=1 << 20))
    assert pci_vendor(old, 1) == 0xFFFF_FFFF and pci_vendor(old, 1, 1) == 0xFFFF_FFFF
    assert pci_vendor(new, 1) == 0x7000_8086 and pci_vendor(new, 1, 1) == 0x7010_8086
    old.port_write(0xCF8, 0x8000_002C, 4)
    new.port_write(0xCF8, 0x8000_002C, 4)
    assert old.port_read(0xCFC, 4) == 0 and new.port_read(0xCFC, 4) == 0x1100_1AF4
    for port in (0x510, 0x1F7, 0x3F6, 0x3DA, 0x3C5):
        assert old.port_read(port) == 0xFF, hex(port)
    old.port_write(0x510, 0, 2)
    assert old.port_read(0x511) == 0xFF and new.port_read(0x402) == 0xE9
    assert old.port_read(0x402) == 0xFF
    old.port_write(0x402, ord("x"))
    assert old.take_output() == b""
    # The disk machine's boot order is revision 2.
    for rev, want in ((1, 0x00), (2, 0x02)):
        m = Machine(MachineConfig(ram_size=1 << 20, platform=rev))
        m.attach_disk(bytes(4096))
        assert cmos(m, 0x3D) == want, rev


def test_configurations_carry_the_revision() -> None:
    assert MachineConfig().platform == PLATFORM_REVISION == 2
    assert MachineConfig().to_dict()["platform"] == 2
    legacy = MachineConfig(platform=1).to_dict()
    assert "platform" not in legacy  # the metadata (and digest) of older traces, unchanged
    assert MachineConfig.from_dict(legacy).platform == 1
    assert MachineConfig.from_dict(MachineConfig(platform=0).to_dict()).platform == 0
    with pytest.raises(ValueError, match="platform revision 3 is not one this aero has"):
        MachineConfig(platform=3)


def record_probe(tmp_path: Path, platform: int) -> Path:
    ref = GuestRef("probe.bin", "flat", 0x7C00, __import__("hashlib").sha256(PROBE).hexdigest(),
                   len(PROBE))
    store_image(PROBE)
    m = start_machine(MachineConfig(ram_size=1 << 20, platform=platform), ref, PROBE)
    p = tmp_path / f"probe{platform}.aerotrace"
    res = Recorder(m, ref, p, RecordOptions(rtc_time=0, max_ticks=1_000_000)).run()
    assert res.output == (b"\xff" if platform == 0 else b"\x86")
    return p


def strip_revision(src: Path, dst: Path) -> None:
    """The trace as an aero from before platform revisions wrote it: no 'platform' key."""
    t = open_trace(src)
    meta = dict(t.metadata)
    meta["machine"] = {k: v for k, v in meta["machine"].items() if k != "platform"}
    with TraceWriter(dst, meta, version=t.version) as w:
        for f in t.frames:
            w.append(f.kind, f.first_tick, f.last_tick, t.read(f))


def test_a_trace_replays_on_the_revision_it_names(tmp_path: Path) -> None:
    for rev in (0, 2):
        p = record_probe(tmp_path, rev)
        c = load_contents(open_trace(p))
        assert c.config.platform == rev
        assert open_trace(p).metadata["machine"]["platform"] == rev
        rep = Replayer(c).run()
        assert not rep.diverged and rep.output == (b"\xff" if rev == 0 else b"\x86")


def test_a_trace_from_before_the_piix3_names_the_way_to_replay_it(tmp_path: Path) -> None:
    old = tmp_path / "old.aerotrace"
    strip_revision(record_probe(tmp_path, 0), old)
    assert load_contents(open_trace(old)).config.platform == 1
    r = aero_cli("replay", str(old))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert "replay DIVERGED" in lines[-2]
    assert "records no platform revision (taken as 1" in lines[-1] and "--platform 0" in \
        lines[-1]
    r = aero_cli("replay", str(old), "--platform", "0", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["diverged"] is False, r.stderr
    assert "revision 1 (none recorded" in aero_cli("info", str(old)).stdout
    r = aero_cli("replay", str(old), "--platform", "7")
    assert r.returncode == 2 and "platform revision 7 is not one this aero has" in r.stderr


def test_a_revision_this_aero_does_not_have_is_one_clear_error(tmp_path: Path) -> None:
    src = record_probe(tmp_path, 2)
    t = open_trace(src)
    meta = dict(t.metadata)
    meta["machine"] = {**meta["machine"], "platform": 9}
    p = tmp_path / "future.aerotrace"
    with TraceWriter(p, meta, version=t.version) as w:
        for f in t.frames:
            w.append(f.kind, f.first_tick, f.last_tick, t.read(f))
    with pytest.raises(ReplayError, match="platform revision 9 is not one this aero has"):
        load_contents(open_trace(p))
    r = aero_cli("replay", str(p))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "revision 9" in r.stderr
