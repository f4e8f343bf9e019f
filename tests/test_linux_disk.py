"""The project-built boot disk: built deterministically with SYSLINUX and mtools, laid out
as a PC boots it; and (slow) SeaBIOS -> SYSLINUX -> Linux -> shell from it in aero, recorded
with a scripted shell session and replayed bit-exactly."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from procenv import aero_cli

from aero import linuxdisk
from aero import linuxguest as lg
from aero.events import Channel

TOOLS = shutil.which("syslinux") and shutil.which("mcopy") and linuxdisk.MBR_CODE.is_file()
needs_tools = pytest.mark.skipif(not TOOLS, reason="syslinux, syslinux-common or mtools missing")
SEABIOS = Path("/usr/share/seabios/bios.bin")


def root_names(img: bytes) -> dict[str, tuple[int, int]]:
    """The partition's root directory: 8.3 name -> (write date, write time)."""
    part = img[linuxdisk.PART_START * 512:]
    bps, _spc, reserved, nfats, entries = struct.unpack_from("<HBHBH", part, 11)
    (fat,) = struct.unpack_from("<H", part, 22)
    root = (reserved + nfats * fat) * bps
    out = {}
    for i in range(entries):
        e = part[root + 32 * i:root + 32 * i + 32]
        if e[0] == 0:
            break
        if e[0] == 0xE5 or e[11] & 0x08:  # deleted, volume label
            continue
        name = e[:8].decode().rstrip() + ("." + e[8:11].decode().rstrip() if e[8] != 32 else "")
        time, date = struct.unpack_from("<HH", e, 22)
        out[name] = (date, time)
    return out


@needs_tools
def test_disk_is_deterministic_and_laid_out_for_a_pc_boot() -> None:
    kernel, initrd = b"K" * 70_000, b"I" * 30_000
    a = linuxdisk.build_image(kernel, initrd, "console=ttyS0")
    b = linuxdisk.build_image(kernel, initrd, "console=ttyS0")
    assert a == b
    assert len(a) == linuxdisk.DISK_BYTES
    mbr = a[:512]
    assert mbr[:440] == linuxdisk.MBR_CODE.read_bytes()[:440] and mbr[510:] == b"\x55\xaa"
    boot, ptype = mbr[446], mbr[450]
    start, size = struct.unpack_from("<II", mbr, 454)
    assert (boot, ptype, start, size) == (0x80, 0x06, 2048, linuxdisk.DISK_BYTES // 512 - 2048)
    part = a[2048 * 512:]
    assert part[510:512] == b"\x55\xaa" and b"SYSLINUX" in part[:512]
    assert struct.unpack_from("<I", part, 28)[0] == 2048  # hidden sectors: the partition start
    names = root_names(a)
    assert {"LDLINUX.SYS", "LDLINUX.C32", "VMLINUZ", "INITRD", "SYSLINUX.CFG"} <= set(names)
    assert set(names.values()) == {(linuxdisk.FAT_DATE, 0)}  # no host clock in the image
    cfg = linuxdisk.syslinux_cfg("console=ttyS0")
    assert cfg.encode() in a and "SERIAL 0 115200" in cfg
    assert kernel in a and initrd in a
    c = linuxdisk.build_image(kernel, initrd, "console=ttyS1")
    assert c != a


@needs_tools
@pytest.mark.skipif(not SEABIOS.exists(), reason="Debian's seabios is not installed")
@pytest.mark.slow
def test_bios_boots_linux_from_the_disk_and_the_session_replays(tmp_path: Path) -> None:
    try:
        lg.fetch()
    except lg.AptUnavailable as exc:
        pytest.skip(str(exc))
    env = {"AERO_IMAGE_STORE": str(tmp_path / "store"), "AERO_TRACE_DIR": str(tmp_path)}
    script = tmp_path / "shell.script"
    script.write_text('on "/ # " serial "echo $((6*7))x\\r"\n'
                      'on "42x" serial "cat /proc/cmdline\\r"\n')
    trace = tmp_path / "boot.aerotrace"
    r = aero_cli("record", "pc", "--disk", "linux", "-o", str(trace), "--input", str(script),
                 "--ticks", "4000000000",
                 "--rtc", "1700000000", "--json", env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout)
    info = json.loads(aero_cli("info", str(trace), "--json", env=env, timeout=1800).stdout)
    assert info["guest"]["name"] == "pc" and info["guest"]["disk_size"] == linuxdisk.DISK_BYTES
    rep = aero_cli("replay", str(trace), "--json", env=env, timeout=1800)
    assert rep.returncode == 0, rep.stderr[-2000:]
    out = json.loads(rep.stdout)
    assert out["diverged"] is False and out["checkpoints_verified"] == rec["checkpoints"]
    from aero.traces.container import FrameKind, open_trace
    from aero.traces.replay import load_contents

    c = load_contents(open_trace(trace))
    text = {Channel.DEBUGCON: bytearray(), Channel.COM1: bytearray()}
    for ev in c.iter_events(FrameKind.OUTPUT):
        for ch, b in zip(ev["a"], ev["b"], strict=True):
            if int(ch) in text:
                text[int(ch)].append(int(b) & 0xFF)
    bios, com1 = text[Channel.DEBUGCON].decode("latin-1"), text[Channel.COM1].decode("latin-1")
    assert "SeaBIOS (version" in bios and "Booting from Hard Disk" in bios
    for marker in ("SYSLINUX 6.04", "Loading vmlinuz... ok", "Run /init as init process",
                   "42x", "console=ttyS0,115200 nokaslr"):
        assert marker in com1, marker
