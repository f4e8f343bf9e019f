"""The shipped Linux session (guests/linux.script), kernel symbols, and `aero diff` on the
packed Linux session of the corpus: one character typed differently is found where the
kernel's 8250 serial driver reads it. The corpus trace embeds the kernel and the initrd,
so nothing here needs apt or the network."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import numpy as np
import pytest
from aero.bench import linuxboot
from aero.traces.container import open_trace
from aero.traces.diff import diff_contents, replace_inputs
from aero.traces.replay import guest_image, load_contents
from aero.traces.script import load
from procenv import assert_gone

from aero import guests
from aero.cli import main
from aero.cli.common import script_file
from aero.cli.diff import annotate_symbols
from aero.events import Kind
from aero.symbols import (
    SymbolError,
    SymbolTable,
    kallsyms_from_bzimage,
    load_symbol_file,
    vmlinux_from_bzimage,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
SESSION = CORPUS / "linux-session.aerotrace"
SCRIPT = guests.SOURCE_DIR / "linux.script"


# ---- the shipped script --------------------------------------------------------------------

def test_shipped_script_runs_the_commands_and_ends_the_shell() -> None:
    ds = load(SCRIPT)
    typed = [d.data.decode() for d in ds]
    assert typed == ["uname -a\r", "cat /proc/cpuinfo\r", "ls /proc\r", "echo $((6*7))\r",
                     "dmesg | tail\r", "exit\r"]
    # Each command waits for the shell's prompt: nothing is typed into the boot.
    assert all(d.trigger == "on" and d.text == b"/ # " for d in ds)


def test_record_input_finds_a_shipped_script_by_name(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert script_file("linux.script") == str(SCRIPT)
    assert script_file("demo.script") == str(guests.SOURCE_DIR / "demo.script")
    (tmp_path / "linux.script").write_text('at 0 serial "x"\n')  # a local file wins
    assert script_file("linux.script") == "linux.script"
    assert script_file("-") == "-"
    with pytest.raises(Exception, match="no such file"):
        script_file("nonexistent.script")


# ---- symbols ---------------------------------------------------------------------------------

def test_symbol_file_lookup(tmp_path: Path) -> None:
    p = tmp_path / "System.map"
    p.write_text("c1000000 T startup_32\nc1000100 t helper\nc1000180 D some_data\n"
                 "c1000200 W weak_fn [mod]\nnot a line\n")
    t = load_symbol_file(p)
    assert len(t) == 3  # data symbols are not code
    assert t.describe(0xC1000000) == "startup_32"
    assert t.describe(0xC10000FF) == "startup_32+0xff"
    assert t.describe(0xC1000180) == "helper+0x80"
    assert t.describe(0xC1000204) == "weak_fn+0x4"
    assert t.describe(0xC0FFFFFF) is None
    assert t.describe(0xC1000200 + 0x10000) is None  # past the last symbol's reach


def test_debian_placeholder_system_map_is_refused(tmp_path: Path, capsys) -> None:
    p = tmp_path / "System.map-6.1.0-57-686"
    p.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg "
                 "package\n")
    with pytest.raises(SymbolError, match="no text symbols"):
        load_symbol_file(p)
    demo = str(CORPUS / "demo.aerotrace")
    assert main(["diff", demo, demo, "--symbols", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aero: error:") and err.count("\n") == 1 and "-dbg" in err


def test_not_a_bzimage_has_no_kallsyms() -> None:
    with pytest.raises(SymbolError, match="not a bzImage"):
        kallsyms_from_bzimage(b"\x90" * 4096)
    img = bytearray(0x1000)
    img[0x202:0x206] = b"HdrS"
    img[0x206:0x208] = (0x0206).to_bytes(2, "little")
    with pytest.raises(SymbolError, match="older than 2.08"):
        vmlinux_from_bzimage(bytes(img))


@pytest.fixture(scope="module")
def session() -> object:
    if not SESSION.exists():
        pytest.skip("no Linux session in the corpus")
    return load_contents(open_trace(SESSION))


@pytest.fixture(scope="module")
def kernel_symbols(session) -> SymbolTable:  # noqa: ANN001
    return kallsyms_from_bzimage(guest_image(session))


def test_kallsyms_of_the_bundled_kernel(kernel_symbols: SymbolTable) -> None:
    t = kernel_symbols
    assert len(t) > 40_000
    names = dict(zip(t.names, t.addresses, strict=True))
    # Linked at 0xC1000000 (PAGE_OFFSET + 16 MB): nokaslr keeps it there.
    assert names["startup_32"] == 0xC1000000
    for n in ("serial8250_rx_chars", "serial8250_handle_irq", "tty_read", "default_idle"):
        assert t.describe(names[n]) == n
        assert t.describe(names[n] + 3) == f"{n}+0x3"


# ---- aero diff on one different character ---------------------------------------------------

def _retyped(c, old: bytes, new: bytes) -> tuple[np.ndarray, int]:  # noqa: ANN001
    """The trace's inputs with the last byte of ``old`` (typed on COM1) replaced by ``new``;
    and the tick of that byte."""
    inp = c.inputs.copy()
    rx = np.flatnonzero((inp["kind"] == Kind.SERIAL_RX) & (inp["a"] == 0))
    typed = bytes(int(inp["b"][i]) for i in rx)
    at = typed.index(old) + len(old) - 1
    inp["b"][rx[at]] = new[0]
    return inp, int(inp["tick"][rx[at]])


@pytest.mark.slow
def test_diff_finds_one_character_in_the_8250_driver(session, kernel_symbols) -> None:  # noqa: ANN001
    # B types "echo $((6*8))" where the recorded session typed "echo $((6*7))".
    inputs, tick = _retyped(session, b"echo $((6*7", b"8")
    report = diff_contents(session, replace_inputs(session, inputs))
    annotate_symbols(report, kernel_symbols)
    assert report["stream"]["stream"] == "input" and report["stream"]["tick"] == tick
    fd = report["first_divergence"]
    # The byte lands in the UART's receive FIFO: a device difference, the CPU untouched.
    assert fd["tick"] == tick + 1 and fd["cause"] == "input"
    assert not fd["registers"] and not fd["memory"]["rows"]
    fifo_a, fifo_b = fd["devices"]["com1"]["rx_fifo"]
    assert ord("7") in fifo_a and ord("8") in fifo_b
    # The guest first sees it when the 8250 driver reads the receive buffer register.
    used = fd["consumed"]
    assert used is not None and used["cause"] == "execution" and used["tick"] > tick + 1
    ins = used["instruction"]["a"]
    assert ins["eip"] == used["instruction"]["b"]["eip"]
    assert ins["text"].startswith("in al, dx")
    assert ins["symbol"].startswith("io_serial_in+")
    i = kernel_symbols.names.index("set_io_from_upio")  # only in 8250_port.c
    assert kernel_symbols.names[i - 2:i] == ("io_serial_in", "io_serial_out")
    assert kernel_symbols.addresses[i - 2] <= ins["linear"] < kernel_symbols.addresses[i - 1]
    assert used["all_registers"]["eax"]["a"] & 0xFF == ord("7")
    assert used["all_registers"]["eax"]["b"] & 0xFF == ord("8")
    assert used["all_registers"]["edx"]["a"] == 0x3F8  # COM1's RBR


# ---- aero bench --linux: QEMU's process hygiene -----------------------------------------------

def _fake_qemu(tmp_path: Path, body: str) -> str:
    p = tmp_path / "fake-qemu"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_bench_qemu_is_stopped_at_the_marker(tmp_path: Path) -> None:
    # Prints the marker, then ignores SIGTERM (an ignored signal stays ignored across exec):
    # only SIGKILL ends it, and it must be gone.
    qemu = _fake_qemu(tmp_path, "trap '' TERM\necho booting\necho 'aero-init: ready'\n"
                                "exec sleep 60\n")
    t = time.monotonic()
    r = linuxboot.boot_qemu(tmp_path / "k", tmp_path / "rd", "console=ttyS0", timeout=30.0,
                            qemu=qemu)
    assert r is not None and 0 < r["seconds"] < 30
    assert time.monotonic() - t < 20
    assert_gone(int(r["pid"]))


def test_bench_qemu_without_the_marker_is_an_error(tmp_path: Path) -> None:
    qemu = _fake_qemu(tmp_path, "echo 'Kernel panic'\nexec sleep 60\n")
    with pytest.raises(RuntimeError, match="did not print 'aero-init: ready' within 1 s"):
        linuxboot.boot_qemu(tmp_path / "k", tmp_path / "rd", "", timeout=1.0, qemu=qemu)
    assert linuxboot.boot_qemu(tmp_path / "k", tmp_path / "rd", "",
                               qemu=str(tmp_path / "absent")) is None


def test_bench_linux_is_opt_in(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from aero.bench import mips, recordreplay

    def boom(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("not part of --linux")

    calls = []
    monkeypatch.setattr(mips, "run", boom)
    monkeypatch.setattr(recordreplay, "run", boom)
    monkeypatch.setattr(linuxboot, "run", lambda log: calls.append(log) or {"aero_seconds": 1})
    assert main(["bench", "--linux", "--json", "--no-progress"]) == 0
    assert calls and '"linux_boot": {"aero_seconds": 1}' in capsys.readouterr().out
    monkeypatch.setattr(linuxboot, "run", boom)
    monkeypatch.setattr(mips, "run", lambda *a, **k: {"workloads": []})
    monkeypatch.setattr(recordreplay, "run", lambda *a, **k: {})
    monkeypatch.setattr(mips, "print_table", lambda _r: None)
    monkeypatch.setattr(recordreplay, "print_report", lambda _r: None)
    assert main(["bench", "--no-progress"]) == 0  # the default run leaves Linux out


def test_bench_counts_ticks_skipped_in_hlt() -> None:
    from aero.launch import resolve, start_machine
    from aero.machine import MachineConfig

    # The demo guest prints its prompt and halts until input comes: nearly all idle.
    r = resolve("demo")
    m = start_machine(MachineConfig(ram_size=32 << 20), r.ref, r.data, r.images)
    idle = linuxboot.idle_ticks(m, 300_000_000)
    assert m.ticks == 300_000_000
    assert idle["halts"] >= 1
    assert 300_000_000 - linuxboot.IDLE_SLICE * idle["halts"] <= idle["idle_ticks"] < 300_000_000


def test_bench_hlt_count_with_a_trace_s_inputs_reproduces_the_run() -> None:
    from aero.traces.replay import guest_images

    from aero.launch import start_machine

    # The demo session of the corpus, its inputs injected at their ticks: the run ends in
    # the recorded final state, and most of it is spent waiting for the next typed byte.
    c = load_contents(open_trace(CORPUS / "demo.aerotrace"))
    images = guest_images(c)
    m = start_machine(c.config, c.guest, images[c.guest.sha256], images)
    idle = linuxboot.idle_ticks(m, c.end_tick, c.inputs)
    ticks, fps = list(c.iter_checkpoints())[-1]
    assert m.ticks == c.end_tick == int(ticks[-1])
    assert m.fingerprint() == int(fps[-1])
    assert idle["halts"] > 1 and c.end_tick // 2 < idle["idle_ticks"] < c.end_tick


def test_diff_finds_the_kernel_symbols_of_a_linux_trace(session) -> None:  # noqa: ANN001
    from aero.cli.diff import kernel_symbols

    t = kernel_symbols(SESSION, None)  # the kernel packed in the trace
    assert t is not None and t.describe(0xC1000000) == "startup_32"
    assert kernel_symbols(CORPUS / "demo.aerotrace", None) is None  # not a Linux guest
    report = {"first_divergence": {"instruction": {"a": {"linear": 0xC1000010},
                                                   "b": {"linear": 0x7C00}},
                                   "consumed": None}}
    annotate_symbols(report, t)
    assert report["first_divergence"]["instruction"]["a"]["symbol"] == "startup_32+0x10"
    assert "symbol" not in report["first_divergence"]["instruction"]["b"]
