"""The demo guest (PIT, PIC, UART with interrupts, RTC, keyboard) recorded with its script
and replayed: bit-exact, and a single changed input byte is caught where it is consumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aero.traces.container import open_trace
from aero.traces.replay import Replayer, load_contents
from traceenv import alter_inputs, record_demo

from aero.events import Channel, Kind

RTC = 1_709_214_350  # 2024-02-29 13:45:50 UTC


@pytest.fixture(scope="module")
def demo_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("demo")
    os.environ["AERO_IMAGE_STORE"] = str(base / "images")
    p = base / "demo.aerotrace"
    res = record_demo(p, rtc=RTC)
    assert res.stop == "exit" and res.exit_status == 7
    return p


def com1(c) -> bytes:
    out = c.output[c.output["a"] == Channel.COM1]
    return out["b"].astype(np.uint8).tobytes()


def test_demo_output_and_inputs(demo_trace: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    text = com1(c).decode()
    assert text.startswith("aero demo\r\nrtc 2024-02-29 13:45:50\r\n> ")
    for line in ("> sum 1 2 39\r\n42\r\n", "> echo hi\r\nhi\r\n", "uptime ", "> exit 3"):
        assert line in text, line
    kinds = set(c.inputs["kind"].tolist())
    assert {Kind.SERIAL_RX, Kind.KEY, Kind.RTC_TIME} <= kinds
    # Every device took part: timer interrupts (IRQ 0), COM1 (IRQ 4), keyboard (IRQ 1),
    # RTC (IRQ 8), all acknowledged by the CPU.
    irqs = set(c.device[c.device["kind"] == Kind.IRQ]["a"].tolist())
    assert {0, 1, 4, 8} <= irqs
    vectors = set(c.device[c.device["kind"] == Kind.INTA]["a"].tolist())
    assert {0x20, 0x21, 0x24, 0x28} <= vectors
    # `ticks`, sent about a guest second after `echo hi`, reports the PIT count then.
    counts = [ln.split()[1] for ln in text.split("\r\n") if ln.startswith("ticks ")]
    assert len(counts) == 2 and counts[0] == "PIT"  # the help line, then the command's
    assert 100 <= int(counts[1]) <= 400


def test_demo_replays_bit_exactly(demo_trace: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    r = Replayer(c).run()
    assert not r.diverged, r.divergence
    assert r.checkpoints_verified == len(c.cp_ticks) >= 10
    assert r.events_verified == len(c.device) + len(c.output)
    assert r.exit_status == 7




def test_one_changed_input_byte_is_detected_where_it_is_consumed(demo_trace: Path,
                                                                tmp_path: Path) -> None:
    c = load_contents(open_trace(demo_trace))
    serial = np.flatnonzero(c.inputs["kind"] == Kind.SERIAL_RX)
    typed = c.inputs[serial]["b"].astype(np.uint8).tobytes()
    k = typed.index(b"39")  # the "3" of "sum 1 2 39"
    index = int(serial[k])
    tick = int(c.inputs[index]["tick"])

    hits = []

    def edit(ev: np.ndarray) -> np.ndarray:
        ev = ev.copy()
        hit = (ev["tick"] == tick) & (ev["kind"] == Kind.SERIAL_RX)
        hits.append(int(hit.sum()))
        ev["b"][hit] = ord("4")
        return ev

    q = tmp_path / "altered.aerotrace"
    alter_inputs(demo_trace, q, edit)
    assert sum(hits) == 1
    r = Replayer(load_contents(open_trace(q))).run()
    assert r.diverged
    d = r.divergence
    # The guest reads the byte in its receive interrupt and echoes it: the first difference
    # is that echo (an output byte), shortly after the byte arrived.
    assert d.what in ("output", "event") and tick <= d.tick < tick + 2_000_000, d
    # Everything before the changed input was verified.
    assert r.events_verified >= int(np.count_nonzero(c.device["tick"] < tick))


def test_cli_demo_json(tmp_path: Path) -> None:
    env = {**os.environ, "AERO_TRACE_DIR": str(tmp_path / "traces"),
           "AERO_IMAGE_STORE": str(tmp_path / "images")}
    r = subprocess.run([sys.executable, "-m", "aero.cli", "demo", "--json"], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["replay"]["diverged"] is False
    assert out["record"]["exit_status"] == 7
    assert out["trace"]["complete"] is True
    assert (tmp_path / "traces" / "latest").exists()
