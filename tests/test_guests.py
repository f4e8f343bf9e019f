"""Guest programs: each is built, run in aero, and (when installed) run in QEMU with the same
debug-console output and exit status. Also the guest build cache and the bench command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aero import guests
from aero.guests import GUESTS, GuestImage, ToolchainError, build
from aero.loader import load_guest
from aero.machine import Machine, MachineConfig, StopReason

pytestmark = pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                                reason="GNU binutils (as, ld) are not installed")

PASS_STATUS = 1  # (0 << 1) | 1: the guest wrote 0 to the debug-exit port
RAM = 32 << 20
TICK_LIMIT = 50_000_000

# Number of checks each guest runs (its summary line), and lines besides PASS lines that it
# prints, in order. Lines starting with these prefixes come from the boot loader's memory
# map and differ between aero's loader and QEMU's firmware.
LOADER_LINES = ("mem_", "mmap ")
EXPECTED: dict[str, tuple[int, list[str]]] = {
    "rom_hello": (9, ["hello from ROM"]),
    "pmode": (18, ["real mode", "protected mode", "real mode again"]),
    "multiboot": (11, ["multiboot kernel"]),
    "cpu_alu": (60, ["cpu_alu"]),
    "cpu_muldiv": (46, ["cpu_muldiv"]),
    "cpu_shift": (64, ["cpu_shift"]),
    "cpu_string": (29, ["cpu_string", "rep outsb to the debug console"]),
    "cpu_stack": (46, ["cpu_stack"]),
    "cpu_misc": (35, ["cpu_misc", "cpuid vendor GenuineIntel"]),
    "cpu_fpu": (106, ["cpu_fpu"]),
    "sys_rings": (26, ["sys_rings"]),
    "sys_tasks": (23, ["sys_tasks"]),
    "sys_v86": (22, ["sys_v86", "v86 says hello through the i/o bitmap"]),
    "sys_exceptions": (72, ["sys_exceptions"]),
    "sys_paging": (60, ["sys_paging", "paging on"]),
}


@pytest.fixture(scope="session")
def images() -> dict[str, GuestImage]:
    return guests.build_all()


def run_aero(image: GuestImage) -> tuple[StopReason, int | None, str, int]:
    m = Machine(MachineConfig(ram_size=RAM))
    load_guest(m, image.path)
    out = bytearray()
    while True:
        stop = m.run(TICK_LIMIT)
        out += m.take_output()
        if stop != StopReason.OUTPUT:
            break
    return stop, m.exit_status, out.decode("latin-1"), m.ticks


def check_output(name: str, text: str) -> None:
    checks, info = EXPECTED[name]
    lines = text.splitlines()
    fails = [ln for ln in lines if not ln.startswith("PASS ") and ln.split(" ")[0] in
             ("FAIL", "UNEXPECTED", "RUNAWAY:")]
    assert not fails, f"{name}: {fails}"
    other = [ln for ln in lines if not ln.startswith("PASS ") and not ln.startswith(LOADER_LINES)]
    assert other == [*info, f"checks={checks:08X} failed=00000000", "RESULT PASS"]
    assert sum(ln.startswith("PASS ") for ln in lines) == checks


INTERACTIVE = {"demo", "stats"}  # driven by input: tests/test_demo_*.py, tests/test_fuzz_inputs.py


def test_every_guest_is_listed() -> None:
    assert set(EXPECTED) | INTERACTIVE == set(GUESTS)
    sources = {p.name for p in guests.SOURCE_DIR.glob("*.s")}
    listed = {s.source for s in (*GUESTS.values(), *guests.BENCH_GUESTS.values(),
                                 *guests.SUPPORT_GUESTS.values())}
    assert sources == listed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_guest_in_aero(name: str, images: dict[str, GuestImage]) -> None:
    stop, status, text, _ticks = run_aero(images[name])
    check_output(name, text)
    assert (stop, status) == (StopReason.EXIT, PASS_STATUS)


def test_guest_runs_are_deterministic(images: dict[str, GuestImage]) -> None:
    a = run_aero(images["cpu_string"])
    b = run_aero(images["cpu_string"])
    assert a == b


def test_multiboot_memory_map_in_aero(images: dict[str, GuestImage]) -> None:
    _stop, _status, text, _ticks = run_aero(images["multiboot"])
    assert [ln for ln in text.splitlines() if ln.startswith(LOADER_LINES)] == [
        "mem_lower=00000280 mem_upper=00007C00",
        "mmap base=0000000000000000 length=00000000000A0000 type=00000001",
        "mmap base=00000000000A0000 length=0000000000060000 type=00000002",
        "mmap base=0000000000100000 length=0000000001F00000 type=00000001",
    ]


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None,
                    reason="qemu-system-i386 is not installed (Debian package qemu-system-x86)")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_guest_in_qemu_matches_aero(name: str, images: dict[str, GuestImage]) -> None:
    from aero.fuzz.qemu import run_qemu

    image = images[name]
    res = run_qemu(image.path, image.fmt, load_addr=image.load_addr, timeout=30.0,
                   ram_mb=RAM >> 20)
    assert not res.timed_out
    qemu_text = res.output.decode("latin-1")
    check_output(name, qemu_text)
    _stop, status, aero_text, _ticks = run_aero(image)

    def core(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if not ln.startswith(LOADER_LINES)]

    assert core(qemu_text) == core(aero_text)
    assert res.exit_status == status == PASS_STATUS


def test_build_cache_is_reused_and_keyed(tmp_path: Path) -> None:
    a = build("rom_hello", cache=tmp_path)
    mtime = a.path.stat().st_mtime_ns
    b = build("rom_hello", cache=tmp_path)
    assert b.path == a.path and b.path.stat().st_mtime_ns == mtime
    c = build("bench_alu", {"ITERS": 7}, cache=tmp_path)
    d = build("bench_alu", {"ITERS": 8}, cache=tmp_path)
    assert c.path != d.path
    assert a.path.stat().st_size == 0x10000
    assert a.symbols["_start"] == 0
    assert not list(tmp_path.glob(".build-*"))


def test_cache_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AERO_GUEST_CACHE", str(tmp_path / "c"))
    assert guests.cache_dir() == tmp_path / "c"
    assert build("pmode").path.parent == tmp_path / "c"


def test_missing_binutils_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    guests.tool_versions.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        with pytest.raises(ToolchainError, match="not found on PATH"):
            build("pmode", cache=tmp_path)
    finally:
        monkeypatch.undo()
        guests.tool_versions.cache_clear()


def test_missing_sources_are_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(guests, "SOURCE_DIR", tmp_path / "nowhere")
    with pytest.raises(ToolchainError, match="not found"):
        build("pmode", cache=tmp_path)


def test_aero_run_command(images: dict[str, GuestImage],
                          capsys: pytest.CaptureFixture[str]) -> None:
    from aero.cli import main

    main(["run", "--json", str(images["rom_hello"].path)])
    report = json.loads(capsys.readouterr().out)
    assert report["stop"] == "exit" and report["exit_status"] == PASS_STATUS
    assert report["output"].startswith("hello from ROM\n")


def test_unknown_guest() -> None:
    with pytest.raises(KeyError, match="unknown guest"):
        build("no_such_guest")


def test_assembler_errors_are_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    src = tmp_path / "broken.s"
    src.write_text("        .code32\n        movl %eax\n")
    (tmp_path / "flat.ld").write_text((guests.SOURCE_DIR / "flat.ld").read_text())
    monkeypatch.setattr(guests, "SOURCE_DIR", tmp_path)
    monkeypatch.setitem(guests.GUESTS, "broken", guests.GuestSpec("broken", "broken.s", "flat",
                                                                  0x7C00, "broken"))
    with pytest.raises(ToolchainError, match="guest broken: as failed"):
        build("broken", cache=tmp_path / "cache")


# ---- the benchmark workloads ----

def test_bench_instruction_model_matches_unicorn() -> None:
    """Unicorn executes exactly aero's tick count minus the final OUT, with the same result.

    The string workload is left out of the count comparison: Unicorn's code hook also fires
    once when a REP instruction is entered with its count already exhausted, which is not
    an instruction retired. Its registers are still compared."""
    pytest.importorskip("unicorn")
    from aero.bench import mips as bench
    from aero.bench import workloads
    from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_MODE_32, Uc

    from aero.loader import parse_elf

    for w in bench.WORKLOADS:
        if w.unicorn_na is not None:
            continue  # needs delivery through the IDT, which Unicorn does not do
        image = build(w.guest, {"ITERS": 3})
        ticks, _sec, regs = workloads.run_on_aero(image)
        data = image.path.read_bytes()
        entry, segs = parse_elf(data, image.path.name)
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, workloads.RAM_SIZE)
        for s in segs:
            uc.mem_write(s.paddr, data[s.offset:s.offset + s.filesz])
        count = [0]

        def tick(*_args: object, counter: list[int] = count) -> None:
            counter[0] += 1

        uc.hook_add(UC_HOOK_CODE, tick)
        uc.emu_start(entry, image.symbols["bench_exit"])
        if w.name != "string":
            assert count[0] == ticks - 1, w.name
        _sec, uregs = bench.unicorn_run(image)
        assert uregs[:4] + uregs[5:] == regs[:4] + regs[5:], w.name


def test_bench_cli_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    from aero.cli import main

    assert main(["bench", "--quick", "--no-reference", "--no-trace", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [w["name"] for w in report["workloads"]]
    assert names == ["alu", "memcpy", "string", "fib", "syscall"]
    for w in report["workloads"]:
        assert isinstance(w["instructions"], int) and w["instructions"] > 0
        assert w["mips"] > 0 and w["seconds"] > 0
        assert w["unicorn_mips"] is None and w["qemu_mips"] is None
    sc = report["workloads"][-1]
    assert sc["syscalls_per_second"] == pytest.approx(sc["iters"] / sc["seconds"])
    assert "IDT" in sc["unicorn_na"]
    assert set(report["method"]) == {"instructions", "aero", "unicorn", "qemu", "syscalls",
                                     "interleaving", "bytes"}
    string = next(w for w in report["workloads"] if w["name"] == "string")
    assert string["bytes_per_second"] == pytest.approx(32768 * string["iters"] /
                                                       string["seconds"])
    assert "record_replay" not in report


def test_bench_syscall_guest_runs_at_ring3_with_paging() -> None:
    """12 instructions per iteration (4 user, INT, 6 in the handler, IRET); the handler's
    running sum comes back to ring 3: EDI = sum over k of k(k+1)/2 for k = 1..ITERS."""
    from aero.bench import workloads

    ticks = [workloads.run_on_aero(build("bench_syscall", {"ITERS": n}))[0] for n in (1, 2, 10)]
    assert ticks[1] - ticks[0] == 12 and ticks[2] - ticks[0] == 9 * 12
    _t, _s, regs = workloads.run_on_aero(build("bench_syscall", {"ITERS": 10}))
    # Iteration i (ECX = n, n-1, ..., 1) adds ECX to the counter; EDI sums the counters.
    counter, total = 0, 0
    for c in range(10, 0, -1):
        counter += c
        total += counter
    assert regs[7] == total


def test_cli_run_bundled_guest_exits_like_qemu(capsys) -> None:
    from aero.cli import main

    assert main(["run", "rom_hello", "--json"]) == 1  # (0 << 1) | 1: the guest passed
    out = json.loads(capsys.readouterr().out)
    assert out["stop"] == "exit" and out["exit_status"] == 1 and "RESULT PASS" in out["output"]
    assert main(["run", "/nonexistent/guest.bin"]) == 2
    assert "no such file" in capsys.readouterr().err.lower()
    assert main(["run"]) == 2
