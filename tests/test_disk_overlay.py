"""A writable disk (``--disk FILE,rw``): the guest's writes go to a copy-on-write overlay
that is machine state (snapshots, fingerprints, keyframes), the image itself is never
written, a recording replays bit-exactly and a seek restores the overlay exactly;
``--disk-save`` keeps the result."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from aero.traces.container import FrameKind, TraceWriter, open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, ReplayError, load_contents, seek
from procenv import aero_cli

from aero.events import Kind
from aero.launch import resolve, start_machine, store_image
from aero.machine import Machine, MachineConfig

SEABIOS = Path("/usr/share/seabios/bios.bin")
needs_seabios = pytest.mark.skipif(not SEABIOS.exists(), reason="Debian's seabios is not installed")

# A boot sector that writes itself to LBA 2 and 3 (INT 13h AH=03h, CHS 0/0/3, two
# sectors from 7C00h), reads LBA 2 back to 8000h (AH=02h) and prints the message at
# its end from the copy read back, on the debug console (402h); "Disk error" on CF. Then
# it idles (STI; HLT in a loop), so that keyframes after the write hold the overlay.
WRITER = bytes.fromhex(
    "31c08ed88ec0b80203b9030030f6bb007ccd13721db80102b9030030f6bb0080cd13720ebe3b80ba0204"
    "ac84c07408eeebf8be527cebf0fbf4ebfd5772697474656e20616e642072656164206261636b0a004469"
    "736b206572726f720a00")


@pytest.fixture(autouse=True)
def _stores(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path_factory.getbasetemp() / "images"))
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path_factory.getbasetemp() / "traces"))


def writer_disk() -> bytes:
    mbr = bytearray(512)
    mbr[:len(WRITER)] = WRITER
    mbr[510:] = b"\x55\xaa"
    return bytes(mbr) + b"".join(bytes([i & 0xFF]) * 512 for i in range(1, 2048))


def pattern_disk(sectors: int = 4032) -> bytes:
    return b"".join(bytes([i & 0xFF]) * 512 for i in range(sectors))


def ata(m: Machine, cmd: int, lba: int = 0, count: int = 1) -> int:
    m.port_write(0x1F2, count)
    m.port_write(0x1F3, lba & 0xFF)
    m.port_write(0x1F4, (lba >> 8) & 0xFF)
    m.port_write(0x1F5, (lba >> 16) & 0xFF)
    m.port_write(0x1F6, 0xE0 | ((lba >> 24) & 0x0F))
    m.port_write(0x1F7, cmd)
    return m.port_read(0x3F6)


def write_words(m: Machine, data: bytes) -> None:
    for (w,) in struct.iter_unpack("<H", data):
        m.port_write(0x1F0, w, 2)


def read_words(m: Machine, n: int) -> bytes:
    return b"".join(m.port_read(0x1F0, 2).to_bytes(2, "little") for _ in range(n))


def irq14(m: Machine) -> list[int]:
    return [int(e["b"]) for e in m.take_events() if e["kind"] == Kind.IRQ and e["a"] == 14]


def rw_machine(disk: bytes | None = None) -> Machine:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.attach_disk(disk if disk is not None else pattern_disk(), writable=True)
    return m


# ---- the drive ------------------------------------------------------------------------------

def test_write_sectors_goes_to_the_overlay_by_the_pio_data_out_protocol() -> None:
    base = pattern_disk()
    m = rw_machine(base)
    m.take_events()
    assert ata(m, 0x30, lba=1001, count=2) == 0x58  # DRQ for the first sector
    assert irq14(m) == []  # ... without an interrupt
    write_words(m, b"A" * 512)
    assert m.port_read(0x3F6) == 0x58 and irq14(m) == [1]  # the next sector asked for
    assert m.port_read(0x1F7) == 0x58 and irq14(m) == [0]
    write_words(m, b"B" * 512)
    assert m.port_read(0x1F7) == 0x50 and irq14(m) == [1, 0]  # done
    assert m.port_read(0x1F3) == 1002 & 0xFF  # the task file holds the last sector
    assert m.disk_bytes(1000 * 512, 4 * 512) == \
        bytes([1000 & 0xFF]) * 512 + b"A" * 512 + b"B" * 512 + bytes([1003 & 0xFF]) * 512
    ata(m, 0x20, lba=1000, count=3)
    assert read_words(m, 768) == m.disk_bytes(1000 * 512, 3 * 512)
    # 1001 and 1002 are in blocks 125 (sectors 1000-1007): one block, copied whole.
    blocks, hashes = m.disk_overlay()
    assert blocks.tolist() == [125]
    assert m.disk_bytes(0, len(base)) != base
    assert m.disk_bytes(1008 * 512) == base[1008 * 512:]
    # A write past the end: IDNF, nothing written.
    assert ata(m, 0x30, lba=4031, count=2) == 0x51 and m.port_read(0x1F1) == 0x10
    assert m.disk_overlay()[0].tolist() == [125]


def test_a_read_only_disk_still_refuses_writes() -> None:
    m = Machine(MachineConfig(ram_size=1 << 20))
    m.attach_disk(pattern_disk())
    assert ata(m, 0x30, lba=5) == 0x51 and m.port_read(0x1F1) == 0x04
    write_words(m, b"X" * 512)
    assert m.disk_bytes(5 * 512, 512) == bytes([5]) * 512
    assert m.disk_overlay()[0].tolist() == []


def test_overlay_travels_with_snapshots_and_fingerprints() -> None:
    m = rw_machine()
    fp0, s0 = m.fingerprint(), m.snapshot()
    ata(m, 0x30, lba=7, count=2)
    write_words(m, b"C" * 512)
    mid = m.snapshot()  # in the middle of a two-sector write
    write_words(m, b"D" * 512)
    fp1, s1 = m.fingerprint(), m.snapshot()
    assert fp1 != fp0 and len(s1) == len(s0) + 2 * (4 + 4096)  # sectors 7, 8: two blocks
    m.restore(s0)
    assert m.fingerprint() == fp0 and m.disk_overlay()[0].tolist() == []
    assert m.disk_bytes(7 * 512, 512) == bytes([7]) * 512
    m.restore(mid)
    write_words(m, b"D" * 512)
    assert m.fingerprint() == fp1
    other = rw_machine()
    other.restore(s1)
    assert other.fingerprint() == fp1 and other.disk_bytes(7 * 512, 1024) == b"C" * 512 + \
        b"D" * 512
    # The same content written into another sector is another state.
    third = rw_machine()
    ata(third, 0x30, lba=9, count=2)
    write_words(third, b"C" * 512 + b"D" * 512)
    assert third.fingerprint() != fp1
    # A snapshot with an overlay does not restore into a read-only disk, nor the reverse.
    ro = Machine(MachineConfig(ram_size=1 << 20))
    ro.attach_disk(pattern_disk())
    with pytest.raises(ValueError):
        ro.restore(s1)
    with pytest.raises(ValueError):
        m.restore(ro.snapshot())


def test_damaged_overlay_sections_are_refused() -> None:
    m = rw_machine(pattern_disk(9))  # 9 sectors: two blocks, the second one partial
    ata(m, 0x30, lba=8)
    write_words(m, b"E" * 512)
    snap = m.snapshot()
    assert m.disk_overlay()[0].tolist() == [1]
    base = len(snap) - (4 + 4 + 4096)
    other = rw_machine(pattern_disk(9))
    for bad in (snap[:-1],  # cut
                snap[:base] + struct.pack("<II", 1, 2) + snap[base + 8:],  # block 2 of 2
                snap[:-1] + b"\x01",  # a byte past the image's end
                snap[:base] + struct.pack("<I", 2) + snap[base + 4:]):  # count too high
        with pytest.raises(ValueError):
            other.restore(bad)
    other.restore(snap)
    assert other.disk_bytes(8 * 512) == b"E" * 512


# ---- recording, replay, seek ----------------------------------------------------------------

def record_writer(tmp_path: Path, disk: bytes) -> tuple[Path, object, object]:
    disk_file = tmp_path / "w.img"
    disk_file.write_bytes(disk)
    r = resolve("pc", disk=str(disk_file), disk_writable=True)
    for image in r.images.values():
        store_image(image)
    m = start_machine(MachineConfig(ram_size=32 << 20), r.ref, r.data, r.images)
    p = tmp_path / "w.aerotrace"
    res = Recorder(m, r.ref, p, RecordOptions(rtc_time=1_700_000_000, max_ticks=12_000_000,
                                              checkpoint_interval=500_000,
                                              keyframe_interval=1_000_000)).run()
    return p, res, m


@needs_seabios
def test_a_guest_that_writes_records_and_replays_bit_exactly(tmp_path: Path) -> None:
    disk = writer_disk()
    p, res, m = record_writer(tmp_path, disk)
    assert b"Booting from Hard Disk...\nBooting from 0000:7c00\nWritten and read back\n" \
        in res.output
    assert res.stop == "limit"
    assert hashlib.sha256((tmp_path / "w.img").read_bytes()).digest() == \
        hashlib.sha256(disk).digest()  # the image is never written
    final = m.disk_bytes()
    assert final[2 * 512:3 * 512] == disk[:512]  # the boot sector, written to LBA 2
    assert final[:2 * 512] == disk[:2 * 512] and final[4 * 512:] == disk[4 * 512:]
    trace = open_trace(p)
    assert trace.version == 3 and trace.metadata["guest"]["disk_writable"] is True
    contents = load_contents(trace)
    rep = Replayer(contents).run()
    assert not rep.diverged, rep.divergence
    assert rep.checkpoints_verified == res.checkpoints and rep.output == res.output
    # Seek into the middle: the last keyframe holds the overlay, and a seek past the write
    # restores it exactly.
    kf_ticks = [f.first_tick for f in contents.keyframes]
    from aero.traces import codec

    blocks = -(-contents.guest.disk_size // 4096)
    with_overlay = [f.first_tick for f in contents.keyframes
                    if len(codec.decode_keyframe(trace.read(f), f, blocks).disk_blocks)]
    assert with_overlay and with_overlay[0] > 0 and with_overlay[-1] == kf_ticks[-1]
    for target in (with_overlay[0], with_overlay[0] - 1, kf_ticks[-1] + 123_457):
        sought, _ = seek(contents, target)
        straight = start_machine(contents.config, contents.guest, SEABIOS.read_bytes(),
                                 {**contents.images, **_images(contents)})
        straight.inject(Kind.RTC_TIME, 0, 1_700_000_000)
        straight.run(target)
        assert (sought.ticks, sought.fingerprint()) == (straight.ticks, straight.fingerprint())
        assert sought.disk_overlay()[0].tolist() == straight.disk_overlay()[0].tolist()
        assert sought.disk_bytes() == straight.disk_bytes()
    assert seek(contents, contents.end_tick)[0].disk_bytes() == final
    assert seek(contents, 0)[0].disk_overlay()[0].tolist() == []


def _images(contents) -> dict[str, bytes]:  # noqa: ANN001
    from aero.traces.replay import guest_images

    return guest_images(contents)


@needs_seabios
def test_an_overlay_keyframe_is_checked_against_its_hashes(tmp_path: Path) -> None:
    p, _res, _m = record_writer(tmp_path, writer_disk())
    t = open_trace(p)
    # Rewrite the trace with the overlay blocks' contents damaged in every pages frame that
    # holds one (a RAM page's bytes are left alone).
    c = load_contents(t)
    from aero.traces import codec

    kf = codec.decode_keyframe(t.read(c.keyframes[-1]), c.keyframes[-1],
                               -(-c.guest.disk_size // 4096))
    assert kf.disk_hashes is not None and len(kf.disk_hashes)
    bad_hashes = {int(h) for h in kf.disk_hashes.tolist()}
    q = tmp_path / "bad.aerotrace"
    with TraceWriter(q, t.metadata, version=t.version) as w:
        for f in t.frames:
            payload = t.read(f)
            if f.kind == FrameKind.PAGES:
                pages = codec.decode_pages(payload, f)
                hs = list(pages)
                data = [pages[h] if h not in bad_hashes else b"\xEE" * 4096 for h in hs]
                payload = codec.encode_pages(hs, data)
            w.append(f.kind, f.first_tick, f.last_tick, payload)
    from aero.traces.container import TraceError

    with pytest.raises(TraceError, match="disk block"):
        seek(load_contents(open_trace(q)), c.keyframes[-1].first_tick)


def test_format_version_and_writable_disk_go_together(tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(pattern_disk(8))
    r = resolve("rom_hello", disk=str(disk), disk_writable=True)
    meta = {"aero": "0", "events_version": 1, "created": "2026-01-01T00:00:00Z",
            "machine": MachineConfig().to_dict(), "guest": r.ref.to_dict(),
            "checkpoint_interval": 1000, "keyframe_interval": 1000}
    p = tmp_path / "v2.aerotrace"
    with TraceWriter(p, meta):  # version 2 with a writable disk
        pass
    with pytest.raises(ReplayError, match="format version 2 cannot have a writable disk"):
        load_contents(open_trace(p))
    meta["guest"] = resolve("rom_hello", disk=str(disk)).ref.to_dict()
    q = tmp_path / "v3.aerotrace"
    with TraceWriter(q, meta, version=3):  # version 3 without one
        pass
    with pytest.raises(ReplayError, match="format version 3 needs a writable disk"):
        load_contents(open_trace(q))


# ---- the command line -----------------------------------------------------------------------

@needs_seabios
def test_cli_records_a_writable_disk_and_saves_the_result(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tmp_path / "w.img"
    disk.write_bytes(writer_disk())
    before = disk.read_bytes()
    t, out = tmp_path / "w.aerotrace", tmp_path / "out.img"
    r = aero_cli("record", "pc", "--disk", f"{disk},rw", "--disk-save", str(out), "-o", str(t),
                 "--ticks", "20000000", "--rtc", "0", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stop"] == "limit"
    assert disk.read_bytes() == before
    saved = out.read_bytes()
    assert len(saved) == len(before) and saved[2 * 512:3 * 512] == before[:512]
    assert saved[:2 * 512] == before[:2 * 512] and saved[4 * 512:] == before[4 * 512:]
    r = aero_cli("replay", str(t), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["diverged"] is False, r.stderr
    info = aero_cli("info", str(t))
    assert "writable" in info.stdout
    # The commands that restore keyframes take the overlay with them.
    r = aero_cli("seek", str(t), "19000000", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["tick"] == 19_000_000, r.stderr
    r = aero_cli("diff", str(t), str(t))
    assert r.returncode == 0 and "identical" in r.stdout, r.stderr
    # Against the same boot with the disk read-only: the runs part at the write.
    ro = tmp_path / "ro.aerotrace"
    assert aero_cli("record", "pc", "--disk", str(disk), "-o", str(ro), "--ticks", "20000000",
                    "--rtc", "0", "--quiet").returncode == 0
    r = aero_cli("diff", str(t), str(ro), "--json")
    assert r.returncode == 1, r.stderr
    first = json.loads(r.stdout)["first_divergence"]
    assert first["cause"] == "execution" and 0 < first["tick"] < 20_000_000, first
    assert first["all_registers"]["eax"]["a"] & 0xFF == 0x30  # OUT 1F7h, WRITE SECTORS
    assert first["all_registers"]["edx"]["a"] & 0xFFFF == 0x1F7
    r = aero_cli("query", str(t), "--mem", "0x8000:2", "--json")  # the sector read back
    assert r.returncode == 0, r.stderr
    assert any(x["new"].startswith("31c0") for x in json.loads(r.stdout)["results"])
    # Packed, the trace carries the image under the overlay and keeps its format version.
    packed = tmp_path / "packed.aerotrace"
    assert aero_cli("pack", str(t), "-o", str(packed)).returncode == 0
    assert open_trace(packed).version == 3
    with monkeypatch.context() as mp:
        mp.setenv("AERO_IMAGE_STORE", str(tmp_path / "empty-store"))
        r = aero_cli("replay", str(packed), "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["diverged"] is False, r.stderr
        r = aero_cli("seek", str(packed), "19000000", "--json")
        assert r.returncode == 0, r.stderr
    # run: the same result, without a trace.
    out2 = tmp_path / "run.img"
    r = aero_cli("run", "pc", "--disk", f"{disk},rw", "--disk-save", str(out2), "--ticks",
                 "20000000")
    assert r.returncode == 0 and "Written and read back" in r.stdout, r.stderr
    assert out2.read_bytes() == saved
    # A read-only boot of the same disk: the write fails.
    r = aero_cli("run", "pc", "--disk", str(disk), "--ticks", "20000000")
    assert "Disk error" in r.stdout


def test_cli_disk_save_needs_a_writable_disk_and_another_file(tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    disk.write_bytes(pattern_disk(8))
    for args in (("run", "rom_hello", "--disk", str(disk), "--disk-save", str(tmp_path / "o")),
                 ("run", "rom_hello", "--disk-save", str(tmp_path / "o")),
                 ("run", "rom_hello", "--disk", f"{disk},rw", "--disk-save", str(disk))):
        r = aero_cli(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "--disk-save" in r.stderr
    assert not (tmp_path / "o").exists()
    assert disk.read_bytes() == pattern_disk(8)


# ---- a disk that changed between record and replay ------------------------------------------

@needs_seabios
@pytest.mark.parametrize("rw", [False, True])
def test_replay_finds_a_changed_disk_by_its_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 rw: bool) -> None:
    disk = tmp_path / "d.img"
    original = writer_disk()
    disk.write_bytes(original)
    t = tmp_path / "d.aerotrace"
    r = aero_cli("record", "pc", "--disk", f"{disk},rw" if rw else str(disk), "-o", str(t),
                 "--ticks", "8000000", "--rtc", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    changed = bytearray(original)
    changed[600] ^= 1
    disk.write_bytes(bytes(changed))
    # The recorder stored the disk by its hash: a changed file passed in is refused.
    r = aero_cli("replay", str(t), "--disk", str(disk), "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "is not the one the trace was recorded with" in r.stderr and "changed" in r.stderr
    assert aero_cli("replay", str(t), "--quiet").returncode == 0  # the stored copy
    # Without the stored copy: one line naming the way out.
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "firmware-only"))
    store_image(SEABIOS.read_bytes())
    store_image(Path("/usr/share/seabios/vgabios-isavga.bin").read_bytes())
    r = aero_cli("replay", str(t), "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "disk image" in r.stderr and "--disk FILE" in r.stderr
    r = aero_cli("replay", str(t), "--disk", str(disk), "--quiet")
    assert r.returncode == 2 and "recorded with" in r.stderr, r.stderr
    disk.write_bytes(original)
    r = aero_cli("replay", str(t), "--disk", str(disk), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["diverged"] is False, r.stderr
    assert disk.read_bytes() == original
