"""Record, replay, verify: every bundled guest is a record -> replay -> compare test; traces
are deterministic, damage is caught, seeking and snapshots are bit-exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aero.traces.container import TraceError, open_trace
from aero.traces.record import Recorder, RecordOptions
from aero.traces.replay import Replayer, ReplayError, load_contents, seek
from aero.traces.snapshot import SnapshotError, load_snapshot, save_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traceenv import alter_inputs

from aero import guests
from aero.events import Kind
from aero.launch import resolve_guest, start_machine, store_image
from aero.machine import MachineConfig, StopReason

RAM = 4 << 20


@pytest.fixture(autouse=True)
def _stores(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path_factory.getbasetemp() / "images"))
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path_factory.getbasetemp() / "traces"))


def record(guest: str, path: Path, **opts: object) -> tuple:
    ref, data = resolve_guest(guest)
    store_image(data)
    m = start_machine(MachineConfig(ram_size=RAM), ref, data)
    options = RecordOptions(rtc_time=1_700_000_000, **opts)  # type: ignore[arg-type]
    return Recorder(m, ref, path, options).run(), ref, data


def replay(path: Path, **kw: object):
    return Replayer(load_contents(open_trace(path))).run(**kw)  # type: ignore[arg-type]


def plain_run(guest: str, ticks: int) -> bytes:
    ref, data = resolve_guest(guest)
    m = start_machine(MachineConfig(ram_size=RAM), ref, data)
    out = bytearray()
    while True:
        stop = m.run(ticks)
        out += m.take_output()
        m.take_events()
        if stop not in (StopReason.OUTPUT, StopReason.EVENTS):
            return bytes(out)


# ---- every guest: record -> replay -> compare -----------------------------------------------

@pytest.mark.parametrize("guest", sorted(set(guests.GUESTS) - {"demo"}))  # demo: own tests
def test_every_guest_records_and_replays_bit_exactly(guest: str, tmp_path: Path) -> None:
    p = tmp_path / "t.aerotrace"
    res, _, _ = record(guest, p, max_ticks=200_000_000, checkpoint_interval=50_000,
                       keyframe_interval=500_000)
    assert res.stop in ("exit", "halt", "idle"), res.stop
    assert res.checkpoints >= 1
    rep = replay(p)
    assert not rep.diverged, rep.divergence
    assert rep.ticks == res.ticks
    assert rep.checkpoints_verified == res.checkpoints
    assert rep.events_verified == res.device_events + res.output_events
    assert rep.output == res.output
    # The recorded output is what a plain run prints.
    assert res.output == plain_run(guest, 200_000_000)


# ---- determinism ----------------------------------------------------------------------------

def _frames(path: Path) -> list[tuple[int, int, int, bytes]]:
    t = open_trace(path)
    return [(f.kind, f.first_tick, f.last_tick, t.read(f)) for f in t.frames]


RECORD_SNIPPET = """
import sys
from aero.launch import resolve_guest, start_machine
from aero.machine import MachineConfig
from aero.traces.record import Recorder, RecordOptions
ref, data = resolve_guest(sys.argv[1])
m = start_machine(MachineConfig(ram_size=4 << 20), ref, data)
Recorder(m, ref, sys.argv[2], RecordOptions(rtc_time=1_700_000_000, checkpoint_interval=20_000,
         keyframe_interval=100_000, max_ticks=50_000_000)).run()
"""


def test_traces_are_byte_identical_across_processes_load_env_and_time_zones(
        tmp_path: Path) -> None:
    guest = "sys_paging"
    record(guest, tmp_path / "warm.aerotrace")  # builds the guest once
    env = dict(os.environ)
    runs = []
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for i, extra in enumerate(({"TZ": "UTC", "LANG": "C"},
                                   {"TZ": "Pacific/Kiritimati", "LANG": "de_DE.UTF-8",
                                    "AERO_UNRELATED": "x" * 1000, "PYTHONHASHSEED": "123"})):
            out = tmp_path / f"run{i}.aerotrace"
            subprocess.run([sys.executable, "-c", RECORD_SNIPPET, guest, str(out)],
                           env={**env, **extra}, check=True, timeout=300)
            runs.append(out)
    finally:
        load.kill()
        load.wait()
    a, b = (open_trace(p) for p in runs)
    meta_a, meta_b = dict(a.metadata), dict(b.metadata)
    meta_a.pop("created")
    meta_b.pop("created")
    assert meta_a == meta_b
    assert _frames(runs[0]) == _frames(runs[1])


# ---- inputs change the run, and replay notices ----------------------------------------------



def test_an_altered_input_is_a_divergence_at_its_tick(tmp_path: Path) -> None:
    p = tmp_path / "t.aerotrace"
    record("rom_hello", p)

    def later_rtc(ev: np.ndarray) -> np.ndarray:
        ev = ev.copy()
        ev["b"][ev["kind"] == Kind.RTC_TIME] += 1
        return ev

    q = tmp_path / "altered.aerotrace"
    alter_inputs(p, q, later_rtc)
    rep = replay(q)
    # The RTC's time is device state: the first checkpoint after it differs.
    assert rep.diverged and rep.divergence.what == "checkpoint"


def test_interrupt_inputs_replay_and_a_changed_vector_is_caught(tmp_path: Path) -> None:
    """A guest fed external interrupts (raised through the event log) replays exactly."""
    ref, data = resolve_guest("sys_exceptions")
    store_image(data)
    m = start_machine(MachineConfig(ram_size=RAM), ref, data)
    p = tmp_path / "t.aerotrace"
    res = Recorder(m, ref, p, RecordOptions(rtc_time=0, checkpoint_interval=10_000,
                                            keyframe_interval=100_000)).run()
    assert not replay(p).diverged
    assert res.inputs == 1


# ---- seeking and snapshots ------------------------------------------------------------------

def test_seek_matches_running_from_the_start(tmp_path: Path) -> None:
    p = tmp_path / "t.aerotrace"
    res, ref, data = record("sys_paging", p, checkpoint_interval=2_500, keyframe_interval=10_000)
    c = load_contents(open_trace(p))
    assert len(c.keyframes) >= 3
    for tick in (0, 1, 9_999, 10_000, 23_333, res.ticks - 1, res.ticks):
        m, _ = seek(c, tick)
        fresh = start_machine(MachineConfig(ram_size=RAM), ref, data)
        fresh.inject(Kind.RTC_TIME, 0, 1_700_000_000)
        fresh.run(tick)
        assert (m.ticks, m.fingerprint()) == (fresh.ticks, fresh.fingerprint()), tick


def test_snapshot_file_continues_bit_exactly(tmp_path: Path) -> None:
    ref, data = resolve_guest("sys_tasks")
    a = start_machine(MachineConfig(ram_size=RAM), ref, data)
    a.run(7_777)
    a.take_output()
    a.take_events()
    save_snapshot(a, tmp_path / "s.snap", ref)
    b, ref_b = load_snapshot(tmp_path / "s.snap")
    assert ref_b == ref and b.ticks == 7_777 and b.fingerprint() == a.fingerprint()
    for t in (10_000, 50_000, 1_000_000):
        sa, sb = a.run(t), b.run(t)
        assert sa == sb and a.fingerprint() == b.fingerprint()
        assert a.take_output() == b.take_output()
        assert a.take_events().tobytes() == b.take_events().tobytes()
    raw = bytearray((tmp_path / "s.snap").read_bytes())
    raw[len(raw) // 2] ^= 1
    (tmp_path / "bad.snap").write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="checksum"):
        load_snapshot(tmp_path / "bad.snap")


# ---- pack and the image store ---------------------------------------------------------------

def test_pack_makes_a_trace_replay_without_the_image_store(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from aero.cli.trace import pack_trace

    p = tmp_path / "t.aerotrace"
    record("pmode", p)
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "empty"))
    with pytest.raises(ReplayError, match="aero pack"):
        replay(p)
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path_store := tmp_path / "again"))
    del tmp_path_store
    _, data = resolve_guest("pmode")
    store_image(data)
    packed = tmp_path / "packed.aerotrace"
    info = pack_trace(p, packed)
    assert info["already_packed"] is False
    monkeypatch.setenv("AERO_IMAGE_STORE", str(tmp_path / "empty2"))
    assert not replay(packed).diverged


# ---- the CLI --------------------------------------------------------------------------------

def aero(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aero.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_cli_record_replay_info_json(tmp_path: Path) -> None:
    p = tmp_path / "cli.aerotrace"
    r = aero("record", "rom_hello", "-o", str(p), "--json", "--rtc", "0")
    assert r.returncode == 1, r.stderr  # the guest writes 0 to port F4: (0 << 1) | 1
    rec = json.loads(r.stdout)
    assert rec["stop"] == "exit" and rec["exit_status"] == 1
    r = aero("replay", str(p), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["diverged"] is False and rep["first_divergence_tick"] is None
    assert rep["checkpoints_verified"] == rec["checkpoints"]
    r = aero("info", str(p), "--json")
    info = json.loads(r.stdout)
    assert r.returncode == 0
    assert info["format_version"] == 2 and info["complete"] is True
    assert info["ticks"] == rec["ticks"] and info["digest"] == rec["digest"]
    assert info["events"] == rec["inputs"] + rec["device_events"] + rec["output_events"]
    # A second recording of the same run: same digest, different creation metadata allowed.
    q = tmp_path / "cli2.aerotrace"
    aero("record", "rom_hello", "-o", str(q), "--json", "--rtc", "0")
    assert json.loads(aero("info", str(q), "--json").stdout)["digest"] == info["digest"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aerotrace"
    bad.write_bytes(b"not a trace at all")
    for cmd in (("replay", str(bad)), ("info", str(bad)), ("pack", str(bad))):
        r = aero(*cmd)
        assert r.returncode == 2
        assert r.stderr.startswith("aero: error:") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr
    r = aero("replay", "--check", str(bad))
    assert r.returncode == 125
    r = aero("record", "no-such-guest")
    assert r.returncode == 2 and "no such file" in r.stderr


def test_replay_check_exit_codes(tmp_path: Path) -> None:
    p = tmp_path / "t.aerotrace"
    record("rom_hello", p)
    assert aero("replay", "--check", str(p)).returncode == 0
    q = tmp_path / "altered.aerotrace"

    def shift(ev: np.ndarray) -> np.ndarray:
        ev = ev.copy()
        ev["b"] += 5
        return ev

    alter_inputs(p, q, shift)
    assert aero("replay", "--check", str(q)).returncode == 1
    r = aero("replay", "--check", str(p), env={"AERO_IMAGE_STORE": str(tmp_path / "none")})
    assert r.returncode == 125


# ---- damage ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    base = tmp_path_factory.mktemp("damage")
    os.environ.setdefault("AERO_IMAGE_STORE", str(base / "images"))
    ref, data = resolve_guest("rom_hello")
    store_image(data)
    m = start_machine(MachineConfig(ram_size=1 << 20), ref, data)
    p = base / "t.aerotrace"
    Recorder(m, ref, p, RecordOptions(rtc_time=5, checkpoint_interval=500,
                                      keyframe_interval=1000)).run()
    return p.read_bytes()


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_recordings_end_in_a_clear_error_or_a_verified_prefix(
        small_trace: bytes, tmp_path: Path, data) -> None:
    raw = bytearray(small_trace)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["truncate", "flip", "length", "kind"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if how == "truncate":
            del raw[pos:]
        elif how == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            # Frame headers: kind at +4, lengths at +28/+32 (see docs/trace-format.md).
            starts = [i for i in range(len(raw) - 4) if raw[i:i + 4] == b"AEFR"]
            if not starts:
                continue
            s = data.draw(st.sampled_from(starts))
            if how == "kind" and s + 5 <= len(raw):
                raw[s + 4] = data.draw(st.integers(0, 255))
            elif s + 36 <= len(raw):
                off = s + data.draw(st.sampled_from([28, 32]))
                raw[off:off + 4] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
        if not raw:
            break
    p = tmp_path / "d.aerotrace"
    p.write_bytes(bytes(raw))
    try:
        t = open_trace(p)
        c = load_contents(t)
        result = Replayer(c).run()
    except (TraceError, ReplayError) as exc:
        assert "\n" not in str(exc)
        return
    # Opened: either the original (a flip in slack bytes) or a recovered prefix, and the
    # replay of what is there is either verified or a reported divergence.
    assert t.complete or t.recovered_bytes >= 0
    assert result.diverged or result.checkpoints_verified >= 0


# ---- a recorder killed with SIGKILL ---------------------------------------------------------

def test_sigkill_leaves_a_trace_that_replays_up_to_its_last_frame(tmp_path: Path) -> None:
    """Kill the recorder at several points: each trace opens (recovered, not complete) and
    replays without divergence up to its last complete frame."""
    import random
    import signal
    import time

    # A flat real-mode loop that keeps counting in memory: inc word [1000h]; jmp back.
    image = tmp_path / "counter.bin"
    image.write_bytes(bytes([0xFF, 0x06, 0x00, 0x10, 0xEB, 0xFA]))
    rng = random.Random(20261123)
    lengths = []
    for i in range(4):
        out = tmp_path / f"killed{i}.aerotrace"
        proc = subprocess.Popen(
            [sys.executable, "-m", "aero.cli", "record", str(image), "-o", str(out), "--quiet",
             "--rtc", "0", "--checkpoint-interval", "2000000", "--keyframe-interval",
             "20000000", "--ticks", "100000000000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ})
        try:
            deadline = time.monotonic() + 60
            while (not out.exists() or out.stat().st_size < 200_000) and \
                    time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        t = open_trace(out)
        assert not t.complete
        c = load_contents(t)
        assert c.summary is None and len(c.cp_ticks) >= 1
        rep = Replayer(c).run()
        assert not rep.diverged, rep.divergence
        assert rep.checkpoints_verified == len(c.cp_ticks)
        assert rep.ticks == int(c.cp_ticks[-1])
        lengths.append(rep.ticks)
    assert len(set(lengths)) > 1  # killed at different points


def test_a_recording_that_ends_on_a_checkpoint_tick(tmp_path: Path) -> None:
    p = tmp_path / "t.aerotrace"
    res, _, _ = record("sys_paging", p, max_ticks=20_000, checkpoint_interval=5_000,
                       keyframe_interval=10_000)
    assert res.stop == "limit" and res.ticks == 20_000
    c = load_contents(open_trace(p))
    assert c.cp_ticks.tolist() == [5_000, 10_000, 15_000, 20_000]
    assert not Replayer(c).run().diverged
