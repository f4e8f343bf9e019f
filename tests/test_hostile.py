"""Hostile input: crafted traces, snapshots, images and scripts, output-heavy and resetting
guests, signals and racing recorders. Every case that could exhaust memory or hang runs in a
subprocess under RLIMIT_AS and a timeout (tests/craft.py)."""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zstandard
from aero.traces import codec
from aero.traces.container import CODEC_ZSTD, FrameKind, open_trace
from aero.traces.record import FLUSH_EVENTS, default_trace_path
from aero.traces.replay import load_contents
from craft import MB, RawFrame, aero_limited, frames_of, run_limited, write_raw, zstd_bomb

import aero
from aero.events import Kind

LIMIT = 400 * MB  # address space for a subprocess that reads a hostile file


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AERO_IMAGE_STORE", str(base / "images"))
        mp.setenv("AERO_TRACE_DIR", str(base / "traces"))
        yield base


@pytest.fixture(scope="module")
def clean(root: Path) -> Path:
    """A small clean trace of the flood guest: keyframes, pages, checkpoints, output."""
    p = root / "clean.aerotrace"
    aero.record("flood", p, ticks=300_000, checkpoint_interval=50_000,
                keyframe_interval=100_000, rtc=0)
    return p


def _one_line_error(r, code: int = 2) -> None:
    assert r.code == code, (r.code, r.stderr[-1500:])
    assert "Traceback" not in r.stderr and "Error:" not in r.stderr.replace("error:", ""), \
        r.stderr[-1500:]


def _run_many(cases: dict[str, list[str]], memory: int = LIMIT, timeout: float = 60,
              env: dict[str, str] | None = None) -> dict:
    """Several ``aero`` command lines in one limited subprocess: {name: [code, stderr]}."""
    body = f"""
    import contextlib, io, json
    from aero.cli import main
    out = {{}}
    for name, argv in {cases!r}.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except BaseException as exc:  # what main let through
                import traceback
                traceback.print_exc()
                code = -1
        out[name] = [code, err.getvalue()]
    print(json.dumps(out))
    """
    r = run_limited(body, memory=memory, timeout=timeout, env=env)
    assert r.code == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


# ---- output-heavy and resetting guests -----------------------------------------------------

def test_flood_is_split_into_frames_and_replays_in_bounded_memory(root: Path) -> None:
    p = root / "flood.aerotrace"
    res = aero.record("flood", p, ticks=2_200_000, rtc=0)  # one checkpoint interval
    assert res.output_events == res.output_bytes == 1_099_999
    t = open_trace(p)
    out = [f for f in t.frames if f.kind == FrameKind.OUTPUT]
    assert len(out) >= 3  # flushed by size, not only at the checkpoint
    assert all(f.raw_len <= 4 + 21 * FLUSH_EVENTS for f in out)
    assert [f.first_tick for f in out] == sorted(f.first_tick for f in out)
    r = aero_limited("replay", str(p), "--json", memory=LIMIT, timeout=120)
    assert r.code == 0, r.stderr[-1500:]
    rep = json.loads(r.stdout)
    assert rep["events_verified"] == rep["output_bytes"] == 1_099_999
    r = aero_limited("info", str(p), "--json", memory=LIMIT)
    assert r.code == 0 and json.loads(r.stdout)["output_events"] == 1_099_999


def test_resetting_rom_replays(root: Path) -> None:
    p = root / "reset.aerotrace"
    res = aero.record("reset_loop", p, ticks=150_000, rtc=0)
    c = load_contents(open_trace(p))
    resets = int(np.count_nonzero(c.device["kind"] == Kind.GUEST_RESET))
    assert resets > 10_000 and res.output == b"R" * res.output_bytes
    r = aero_limited("replay", str(p), "--json", "--check", memory=LIMIT, timeout=120)
    assert r.code == 0, r.stderr[-1500:]
    assert json.loads(r.stdout)["output_bytes"] == res.output_bytes


# ---- decompression bombs -----------------------------------------------------------------------

@pytest.mark.parametrize("declared,actual", [(2 << 30, 2 << 30), (1 << 40, 1 << 20)])
def test_index_bomb_is_rejected_cheaply(root: Path, clean: Path, declared: int,
                                        actual: int) -> None:
    meta, frames = frames_of(clean)
    bomb = RawFrame(FrameKind.INDEX, 0, 0, zstd_bomb(declared, actual), CODEC_ZSTD,
                    raw_len=25 * len(frames))
    p = write_raw(root / f"bomb-{declared}.aerotrace", meta, frames, index_frame=bomb)
    assert p.stat().st_size < 600_000  # the clean trace is ~260 KB, the bomb 64 KB
    r = aero_limited("info", str(p), memory=LIMIT, timeout=30)
    _one_line_error(r)
    assert "index frame" in r.stderr


def test_frame_bomb_and_snapshot_bomb(root: Path, clean: Path) -> None:
    meta, frames = frames_of(clean)
    i = next(i for i, f in enumerate(frames) if f.kind == FrameKind.SUMMARY)
    frames[i] = RawFrame(FrameKind.SUMMARY, frames[i].first, frames[i].last,
                         zstd_bomb(2 << 30, 2 << 30), CODEC_ZSTD, raw_len=64 << 20)
    p = write_raw(root / "summary-bomb.aerotrace", meta, frames)
    # A snapshot whose state declares and expands to 2 GB.
    snap = root / "good.snap"
    r = aero_limited("seek", str(clean), "100000", "--save", str(snap), memory=LIMIT)
    assert r.code == 0, r.stderr
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600
    data = snap.read_bytes()
    head = 8 + 6
    meta_len = struct.unpack_from("<I", data, 10)[0]
    body = data[:head + meta_len]
    state = zstd_bomb(2 << 30, 2 << 30)
    body += struct.pack("<Q", len(state)) + state
    import zlib
    bad = root / "bomb.snap"
    bad.write_bytes(body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF))
    out = run_limited(f"""
        from aero.traces.snapshot import SnapshotError, load_snapshot
        load_snapshot({str(snap)!r})
        try:
            load_snapshot({str(bad)!r})
        except SnapshotError as exc:
            print("rejected", exc)
        """, memory=LIMIT, timeout=30)
    assert out.code == 0 and out.stdout.startswith("rejected"), out.stderr[-1500:]
    r = aero_limited("replay", str(p), memory=LIMIT, timeout=30)
    _one_line_error(r)


# ---- a trace must not name files -------------------------------------------------------------

def test_guest_hash_cannot_name_a_file(root: Path, clean: Path) -> None:
    meta, frames = frames_of(clean)
    bad = "/" * 47 + "../../dev/zero"
    bad = bad.rjust(64, "/")
    assert len(bad) == 64
    meta["guest"]["sha256"] = bad
    p = write_raw(root / "zero.aerotrace", meta, frames)
    res = _run_many({"replay": ["replay", str(p)], "pack": ["pack", str(p)],
                     "info": ["info", str(p)]}, timeout=30)
    for name, (code, err) in res.items():
        assert code == 2 and "sha256" in err and "Traceback" not in err, (name, err)


def test_image_store_refuses_links_fifos_and_wrong_sizes(root: Path, clean: Path) -> None:
    c = load_contents(open_trace(clean))
    store = Path(os.environ["AERO_IMAGE_STORE"])
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / c.guest.sha256).stat().st_mode) == 0o600
    body = f"""
        import dataclasses, os
        from aero.launch import GuestRef, find_image
        store = {str(root / 'evil-store')!r}
        os.makedirs(store, exist_ok=True)
        os.environ["AERO_IMAGE_STORE"] = store
        a, b, d = "a" * 64, "b" * 64, "d" * 64
        os.symlink("/dev/zero", os.path.join(store, a))
        os.mkfifo(os.path.join(store, b))
        with open(os.path.join(store, d), "wb") as f:
            f.write(b"x" * 100)
        print([find_image(GuestRef("g", "flat", 0x7C00, h, 9)) for h in (a, b, d)])
        print(find_image(GuestRef("g", "flat", 0x7C00, "../" * 21 + "x", 9)))
        """
    r = run_limited(body, memory=LIMIT, timeout=20)
    assert r.code == 0 and r.stdout.split() == ["[None,", "None,", "None]", "None"], r.stderr


def test_keyframe_is_checked_before_allocation(root: Path, clean: Path) -> None:
    meta, frames = frames_of(clean)
    i = next(i for i, f in enumerate(frames) if f.kind == FrameKind.KEYFRAME)
    n = (1 << 30) // 4096
    k = codec.Keyframe(0, 1 << 30, bytes(512), bytes(4096), np.zeros(n, np.uint64),
                       np.zeros(n, np.uint32), 0)
    payload = codec.encode_keyframe(k)
    stored = zstandard.ZstdCompressor().compress(payload)
    frames[i] = RawFrame(FrameKind.KEYFRAME, 0, 0, stored, CODEC_ZSTD, raw_len=len(payload))
    p = write_raw(root / "kf1g.aerotrace", meta, frames)
    assert p.stat().st_size < 600_000
    # The same keyframe under a 1 GB configuration: its pages frames do not exist.
    meta["machine"]["ram_size"] = 1 << 30
    frames[i] = RawFrame(FrameKind.KEYFRAME, 0, 0, stored, CODEC_ZSTD, raw_len=len(payload))
    k2 = codec.Keyframe(0, 1 << 30, bytes(512), bytes(4096), np.zeros(n, np.uint64),
                        np.full(n, 999, np.uint32), 0)
    payload2 = codec.encode_keyframe(k2)
    frames[i] = RawFrame(FrameKind.KEYFRAME, 0, 0, zstandard.ZstdCompressor().compress(payload2),
                         CODEC_ZSTD, raw_len=len(payload2))
    q = write_raw(root / "kf1g-cfg.aerotrace", meta, frames)
    meta["machine"]["ram_size"] = (1 << 30) + 4096
    big = write_raw(root / "ram-too-big.aerotrace", meta, frames)
    res = _run_many({"small": ["seek", str(p), "0"], "cfg": ["seek", str(q), "0"],
                     "big": ["seek", str(big), "0"]}, memory=LIMIT, timeout=40)
    assert res["small"][0] == 2 and "RAM" in res["small"][1], res
    assert res["cfg"][0] == 2 and "missing pages frame" in res["cfg"][1], res
    assert res["big"][0] == 2 and "ram_size" in res["big"][1], res


# ---- crafted metadata and frames ---------------------------------------------------------------

def _crafted(root: Path, clean: Path) -> dict[str, Path]:
    meta, frames = frames_of(clean)
    out: dict[str, Path] = {}

    def meta_case(name: str, edit) -> None:
        m = json.loads(json.dumps(meta))
        raw = edit(m)
        out[name] = write_raw(root / f"{name}.aerotrace", raw if raw is not None else m, frames)

    meta_case("float-ram", lambda m: m["machine"].__setitem__("ram_size", 33554432.0))
    meta_case("int-vendor", lambda m: m["machine"].__setitem__("cpuid_vendor", 12))
    meta_case("bool-tick-hz", lambda m: m["machine"].__setitem__("tick_hz", True))
    meta_case("long-int", lambda m: json.dumps(m).replace('"created"', '"x":' + "9" * 5000
                                                           + ',"created"').encode())
    meta_case("deep", lambda m: json.dumps(m).replace('"created"', '"x":' + "[" * 100_000
                                                       + "]" * 100_000 + ',"created"').encode())
    meta_case("bad-utf8", lambda m: json.dumps(m, separators=(",", ":")).encode().replace(
        b'"aero":"', b'"aero":"\xff'))
    meta_case("no-machine", lambda m: m.pop("machine") and None)
    meta_case("events-v9", lambda m: m.__setitem__("events_version", 9))

    def frames_case(name: str, edit) -> None:
        fs = [RawFrame(f.kind, f.first, f.last, f.stored) for f in frames]
        edit(fs)
        out[name] = write_raw(root / f"{name}.aerotrace", meta, fs)

    def no_ticks(fs: list[RawFrame]) -> None:
        i = next(i for i, f in enumerate(fs) if f.kind == FrameKind.SUMMARY)
        s = json.loads(fs[i].stored)
        del s["ticks"]
        fs[i].stored = json.dumps(s).encode()

    def huge_ticks(fs: list[RawFrame]) -> None:
        i = next(i for i, f in enumerate(fs) if f.kind == FrameKind.SUMMARY)
        s = json.loads(fs[i].stored)
        s["ticks"] = 1 << 62
        fs[i].stored = json.dumps(s).encode()
        fs[i].first = fs[i].last = 1 << 62

    def unknown_input(fs: list[RawFrame]) -> None:
        i = next(i for i, f in enumerate(fs) if f.kind == FrameKind.INPUT)
        ev = np.zeros(1, dtype=[("tick", "<u8"), ("kind", "<u4"), ("a", "<u4"), ("b", "<u8")])
        ev["kind"] = 0x3F
        fs[i].stored = codec.encode_events(ev, fs[i].first)

    def bad_serial_port(fs: list[RawFrame]) -> None:
        i = next(i for i, f in enumerate(fs) if f.kind == FrameKind.INPUT)
        ev = np.zeros(1, dtype=[("tick", "<u8"), ("kind", "<u4"), ("a", "<u4"), ("b", "<u8")])
        ev["kind"], ev["a"] = Kind.SERIAL_RX, 7
        fs[i].stored = codec.encode_events(ev, fs[i].first)

    def unknown_frame_kind(fs: list[RawFrame]) -> None:
        fs.insert(1, RawFrame(42, 0, 0, b"x"))

    frames_case("summary-no-ticks", no_ticks)
    frames_case("summary-huge-ticks", huge_ticks)
    frames_case("unknown-input-kind", unknown_input)
    frames_case("bad-serial-port", bad_serial_port)
    frames_case("unknown-frame-kind", unknown_frame_kind)
    return out


def test_crafted_traces_are_one_line_errors(root: Path, clean: Path) -> None:
    cases = _crafted(root, clean)
    argvs = {}
    for name, p in cases.items():
        for cmd in ("info", "replay"):
            argvs[f"{name}/{cmd}"] = [cmd, str(p)]
    argvs["unknown-input-kind/check"] = ["replay", "--check", str(cases["unknown-input-kind"])]
    res = _run_many(argvs, timeout=90)
    for name, (code, err) in res.items():
        # info does not execute: a bad input argument shows as a digest mismatch (exit 1).
        want = 125 if name.endswith("/check") else 1 if name == "bad-serial-port/info" else 2
        assert code == want, (name, code, err[-800:])
        if code == 1:
            continue
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in err, (name, err[-800:])
    assert "9 is not supported" in res["events-v9/info"][1]
    assert "not UTF-8" in res["bad-utf8/info"][1]


def test_metadata_property(root: Path, clean: Path) -> None:
    work = root / "prop"
    work.mkdir()
    r = run_limited(f"""
        from pathlib import Path
        from hostile_props import metadata_property
        print(metadata_property(Path({str(clean)!r}), Path({str(work)!r})))
        """, memory=1024 * MB, timeout=120)  # Hypothesis's own tables need room
    assert r.code == 0, r.stderr[-3000:]
    assert int(r.stdout) > 0


def test_script_property() -> None:
    r = run_limited("""
        from hostile_props import script_property
        print(script_property())
        """, memory=1024 * MB, timeout=120)  # Hypothesis's own tables need room
    assert r.code == 0, r.stderr[-3000:]
    assert int(r.stdout) > 0


# ---- quieter wrong answers ---------------------------------------------------------------------

def test_unreadable_traces_are_not_verified(root: Path, clean: Path) -> None:
    meta, frames = frames_of(clean)
    broken = [RawFrame(f.kind, f.first, f.last, f.stored) for f in frames]
    damaged = write_raw(root / "first-damaged.aerotrace", meta, broken, index=False)
    data = bytearray(damaged.read_bytes())
    hl = 8 + 8 + struct.unpack_from("<I", data, 12)[0] + 4
    data[hl + 40] ^= 0xFF  # inside the first frame's payload: its checksum fails
    damaged.write_bytes(bytes(data))
    # Cut after the keyframe and its pages, before the first checkpoint.
    first_cp = next(i for i, f in enumerate(frames) if f.kind == FrameKind.CHECKPOINT)
    cut = write_raw(root / "cut.aerotrace", meta, frames[:first_cp], index=False)
    half = root / "half.aerotrace"
    whole = clean.read_bytes()
    half.write_bytes(whole[:len(whole) // 2])
    res = _run_many({"damaged": ["replay", str(damaged)],
                     "damaged/check": ["replay", "--check", str(damaged)],
                     "cut/check": ["replay", "--check", str(cut)],
                     "damaged/info": ["info", "--json", str(damaged)],
                     "half/info": ["info", "--json", str(half)],
                     "clean/info": ["info", "--json", str(clean)]}, timeout=60)
    assert res["damaged"][0] == 2, res["damaged"]
    assert res["damaged/check"][0] == 125 and res["cut/check"][0] == 125, res
    assert res["damaged/info"][0] == 1 and res["half/info"][0] == 1, res
    assert res["clean/info"][0] == 0, res


def test_triple_fault_exits_alike_from_run_and_record(root: Path) -> None:
    image = root / "triple.bin"
    code = bytes([0xFA, 0x0F, 0x01, 0x1E, 0x10, 0x7C, 0xCC])  # cli; lidt [7C10h]; int3
    image.write_bytes(code.ljust(16, b"\x90") + bytes(6))  # an IDT limit of 0: shutdown
    res = _run_many({"run": ["run", str(image), "--format", "flat"],
                     "record": ["record", str(image), "--format", "flat", "-o",
                                str(root / "triple.aerotrace"), "--quiet"]})
    assert res["run"][0] == res["record"][0] == 1, res
    assert load_contents(open_trace(root / "triple.aerotrace")).summary["stop"] == "shutdown"


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aero", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 30) -> int:
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_closes_the_recording_and_updates_latest(root: Path, sig: int) -> None:
    tdir = Path(os.environ["AERO_TRACE_DIR"]) / f"sig{int(sig)}"
    env_before = os.environ["AERO_TRACE_DIR"]
    os.environ["AERO_TRACE_DIR"] = str(tdir)
    try:
        proc = _spawn("record", "flood", "--quiet", "--checkpoint-interval", "1000000")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            traces = list(tdir.glob("flood-*.aerotrace")) if tdir.exists() else []
            if traces and traces[0].stat().st_size > 0:  # the recorder has started
                break
            time.sleep(0.05)
        proc.send_signal(sig)
        assert _finish(proc) == 0
    finally:
        os.environ["AERO_TRACE_DIR"] = env_before
    (trace,) = tdir.glob("flood-*.aerotrace")
    t = open_trace(trace)
    c = load_contents(t)
    assert t.complete and c.summary is not None and c.summary["stop"] == "interrupted"
    assert (tdir / "latest").resolve() == trace.resolve()
    assert stat.S_IMODE(tdir.stat().st_mode) == 0o700
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600


def test_sigterm_during_pack_leaves_no_temporary_file(root: Path, clean: Path) -> None:
    meta, frames = frames_of(clean)
    # Many frames make pack take a while; it is stopped once its temporary file exists.
    many = frames[:-2] + [RawFrame(FrameKind.DEVICE, frames[-3].last, frames[-3].last,
                                   codec.encode_events(np.zeros(0, dtype=[
                                       ("tick", "<u8"), ("kind", "<u4"), ("a", "<u4"),
                                       ("b", "<u8")]), frames[-3].last))] * 40_000 + frames[-2:]
    d = root / "packdir"
    d.mkdir()
    p = write_raw(d / "many.aerotrace", meta, many)
    proc = _spawn("pack", str(p))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(d.glob(".pack-*")) and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "pack finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 128 + signal.SIGTERM
    assert sorted(x.name for x in d.iterdir()) == ["many.aerotrace"]


# ---- safe files ------------------------------------------------------------------------------

def test_trace_names_are_taken_exclusively(root: Path) -> None:
    names: list[Path] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            p = default_trace_path("race")
            with lock:
                names.append(p)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 100
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in names)


def test_parallel_recorders_do_not_clobber(root: Path) -> None:
    tdir = root / "parallel"
    env = {**os.environ, "AERO_TRACE_DIR": str(tdir)}
    procs = [subprocess.Popen([sys.executable, "-m", "aero", "record", "flood", "--ticks",
                               str(20_000 + 1000 * i), "--quiet"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True) for i in range(4)]
    assert [_finish(p, 60) for p in procs] == [0] * 4
    ticks = sorted(load_contents(open_trace(t)).end_tick for t in tdir.glob("flood-*.aerotrace"))
    assert ticks == [20_000, 21_000, 22_000, 23_000]


def test_planted_symlinks_are_not_followed(root: Path, clean: Path) -> None:
    tdir = Path(os.environ["AERO_TRACE_DIR"])
    tdir.mkdir(parents=True, exist_ok=True)
    target = root / "planted-target"
    (tdir / "flood-0.aerotrace").symlink_to(target)  # dangling
    res = aero.record("flood", ticks=1000, rtc=0)
    assert res.path.name != "flood-0.aerotrace" and not target.exists()
    out = _run_many({"o": ["record", "flood", "--ticks", "1000", "--quiet", "-o",
                           str(tdir / "flood-0.aerotrace")]})
    assert out["o"][0] == 2 and not target.exists(), out


# ---- images and scripts ----------------------------------------------------------------------

def test_images_are_bounded_before_they_are_read(root: Path) -> None:
    store = root / "store-rejected"
    rom = root / "bad.rom"
    rom.write_bytes(b"\x90" * 100)
    big = root / "big.bin"
    with open(big, "wb") as f:
        f.truncate(40 << 20)  # sparse: larger than 32 MB of RAM
    res = _run_many({
        "run-zero": ["run", "/dev/zero"],
        "record-zero": ["record", "/dev/zero", "-o", str(root / "z.aerotrace")],
        "record-big": ["record", str(big), "--format", "flat", "-o", str(root / "b.aerotrace")],
        "record-bad-rom": ["record", str(rom), "--format", "rom", "-o",
                           str(root / "r.aerotrace")],
    }, timeout=30, env={"AERO_IMAGE_STORE": str(store)})
    for name, (code, err) in res.items():
        assert code == 2 and len(err.strip().splitlines()) == 1, (name, err[-800:])
    assert "regular file" in res["run-zero"][1] and "fit in RAM" in res["record-big"][1]
    assert not store.exists() or not any(store.iterdir())


def test_input_scripts_have_limits(root: Path) -> None:
    long = root / "long.script"
    long.write_text('at 0 serial "' + "x" * (10 << 20) + '"\n')
    many = root / "many.script"
    many.write_text("at +0 nmi\n" * 1_000_000)
    burst = root / "burst.script"
    burst.write_text('at +0 serial "x"\n' * 50_000)
    far = root / "far.script"
    far.write_text('at 9000000000000000000 serial "x"\n')
    huge = root / "huge.script"
    huge.write_text('at 100000000000000000000000 serial "x"\n')
    idle = root / "idle.bin"
    idle.write_bytes(bytes([0xFB, 0xF4, 0xEB, 0xFD]))  # sti; hlt; jmp back
    o = str(root / "s.aerotrace")
    res = _run_many({
        "long": ["record", "flood", "--input", str(long), "-o", o, "--quiet"],
        "many": ["record", "flood", "--input", str(many), "-o", o, "--quiet"],
        "huge": ["record", "flood", "--input", str(huge), "-o", o, "--quiet"],
        "burst": ["record", "flood", "--input", str(burst), "--ticks", "2000", "-o",
                  str(root / "burst.aerotrace"), "--quiet"],
        "far": ["record", str(idle), "--format", "flat", "--input", str(far), "-o",
                str(root / "far.aerotrace"), "--checkpoint-interval", "100000"],
    }, memory=LIMIT, timeout=90)
    assert res["long"][0] == 2 and "longer than" in res["long"][1], res["long"]
    assert res["many"][0] == 2 and "directives" in res["many"][1], res["many"]
    assert res["huge"][0] == 2 and "beyond" in res["huge"][1], res["huge"]
    assert res["burst"][0] == 0, res["burst"]
    assert res["far"][0] == 1 and "next scripted input" in res["far"][1], res["far"]
    c = load_contents(open_trace(root / "burst.aerotrace"))
    assert int(np.count_nonzero(c.inputs["kind"] == Kind.SERIAL_RX)) == 50_000
    assert load_contents(open_trace(root / "far.aerotrace")).summary["stop"] == \
        "script-unreachable"
