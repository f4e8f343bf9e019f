"""Unix manners of the ``aero`` command: help for every option, one grammar for ticks and
speeds, ``latest`` everywhere, ``-`` for stdin/stdout, a quiet exit 141 on a closed pipe,
--version, shell completion, ``aero ls`` and the progress lines."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aero import cli
from aero.cli import common
from aero.progress import Progress


def run_main(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def aero(*args: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aero.cli", *args], capture_output=True,
                          timeout=120, **kw)  # type: ignore[call-overload]


def _parsers(parser: argparse.ArgumentParser, name: str = "aero") -> list:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, child in action.choices.items():
                out += _parsers(child, f"{name} {sub_name}")
    return out


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    parsers = _parsers(cli.build_parser())
    assert len(parsers) > 20
    for name, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not (choice.help or "").strip():
                        missing.append(f"{name} {choice.dest}")
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


# ---- the grammars ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("20_000_000", 20_000_000), ("0x10", 16), ("0X_ff", 255), ("1e9", 10**9),
    ("2.5e6", 2_500_000), ("1E3", 1000), ("1e+3", 1000), ("007", 7),
    (str(2**63 - 1), 2**63 - 1), (" 5 ", 5)])
def test_tick_grammar_accepts(text: str, value: int) -> None:
    assert common.tick(text) == value


@pytest.mark.parametrize("text", ["-5", "-0x10", "1.5", "1.5e0", "1e-3", "2.5e0", "inf", "nan",
                                  str(2**63), "1e19", "1e400", "", "abc", "0x", "1_", "_1",
                                  "1__0", "+5", "5.", "0b101", "1e9.5"])
def test_tick_grammar_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        common.tick(text)
    assert "\n" not in str(exc.value)


def test_ranged_integers_and_sizes() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        common.interval("0")
    assert common.interval("1e7") == 10**7
    assert common.ram_size("32M") == 32 << 20 and common.ram_size("0x100000") == 1 << 20
    assert common.ram_size("1GiB") == 1 << 30
    for bad in ("0", "512K", "4G", "1048577", "-1M"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.ram_size(bad)


def test_one_speed_vocabulary() -> None:
    import math

    assert common.speed("max") == math.inf and common.speed("instant") == math.inf
    assert common.speed("realtime") == 1.0 and common.speed("x2") == 2.0
    assert common.speed("x0.5") == 0.5 and common.speed("X1e2") == 100.0
    for bad in ("xinf", "x1e-300", "x0", "x-1", "xnan", "x1e9", "fast", "", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.speed(bad)


# ---- traces: latest, a path, or nothing -------------------------------------------------------

@pytest.fixture()
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """rom_hello recorded into an empty trace directory (so 'latest' points to it)."""
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path / "traces"))
    code, _out, err = run_main(["record", "rom_hello", "--quiet", "--rtc", "0"])
    assert code == 1, err
    return tmp_path / "traces"


def _stable(obj: object) -> object:
    """``obj`` without its timings."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if "seconds" not in k and k != "elapsed"}
    return obj


def test_latest_a_path_or_nothing_everywhere(recorded: Path, tmp_path: Path) -> None:
    trace = recorded / "rom_hello-0.aerotrace"
    assert (recorded / "latest").resolve() == trace
    for cmd in (["info", "--json"], ["check", "--json"], ["replay", "--json"]):
        results = []
        for target in ([], ["latest"], [str(trace)]):
            code, out, err = run_main([*cmd[:1], *target, *cmd[1:]])
            assert code == 0, (cmd, target, err)
            results.append(_stable(json.loads(out)))
        assert results[0] == results[1] == results[2], cmd
    code, _out, err = run_main(["pack", "latest", "-o", str(tmp_path / "p.aerotrace")])
    assert code == 0, err
    assert run_main(["pack", "-o", str(tmp_path / "q.aerotrace"), "--json"])[0] == 0
    a = json.loads(run_main(["seek", "100", "--json"])[1])
    b = json.loads(run_main(["seek", "latest", "1e2", "--json"])[1])
    assert a == {**b, "seek_seconds": a["seek_seconds"]} and a["tick"] == 100
    code, out, _err = run_main(["export", "--format", "tenet", "--from", "0", "--to", "5"])
    assert code == 0 and len(out.splitlines()) == 5
    code, out, _err = run_main(["diff", "latest", str(trace), "--json"])
    assert code == 0 and json.loads(out)["identical"] is True


def test_latest_missing_or_dangling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path))
    code, _out, err = run_main(["check"])
    assert code == 2 and "record one first" in err and err.count("\n") == 1
    (tmp_path / "latest").symlink_to(tmp_path / "gone.aerotrace")
    code, _out, err = run_main(["pack", "latest"])
    assert code == 2 and "no longer exists" in err and err.count("\n") == 1


# ---- '-' for stdin and stdout -----------------------------------------------------------------

def test_dash_is_stdout_for_export_and_stdin_for_input(recorded: Path, tmp_path: Path) -> None:
    code, out, _err = run_main(["export", "--format", "perfetto", "-o", "-"])
    assert code == 0 and "traceEvents" in json.loads(out)
    assert not Path("-").exists()
    script = 'at 1000 serial "x"\n'
    out_trace = tmp_path / "s.aerotrace"
    code, _out, err = run_main(["record", "rom_hello", "--input", "-", "-o", str(out_trace),
                                "--quiet", "--rtc", "0", "--json"], stdin=script)
    assert code == 1, err
    assert json.loads(_out)["inputs"] >= 2  # the RTC time and the scripted byte
    code, _out, err = run_main(["record", "rom_hello", "--input", "-", "--quiet"],
                               stdin='at 1000 bogus "x"\n')
    assert code == 2 and "<stdin>" in err and err.count("\n") == 1
    violations = json.dumps({"violations": [{"tick": 5, "message": "m", "oracle": "o"}]})
    code, out, err = run_main(["export", "--format", "perfetto", "--violations", "-"],
                              stdin=violations)
    assert code == 0, err and '"m"' in out


# ---- a closed stdout ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["run", "--list"], ["check", "--list", "--json"],
                                  ["check", "--list"], ["completion", "bash"],
                                  ["run", "rom_hello"]])
def test_a_closed_pipe_ends_quietly_with_141(argv: list[str]) -> None:
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write: EPIPE, deterministically
    try:
        p = subprocess.run([sys.executable, "-m", "aero.cli", *argv], stdout=w,
                           stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    assert p.returncode == common.EXIT_PIPE == 141, p.stderr
    assert p.stderr == b""


def test_a_closed_pipe_under_a_library_rich_console() -> None:
    """rich's own broken-pipe handler (exit 1) in code outside aero.cli still gives 141."""
    code = ("import sys\nfrom aero import cli\nfrom aero.cli import run\n"
            "def f(args):\n    from rich.console import Console\n"
            "    Console().print('hello')\n    return 0\n"
            "run.cmd_run = f\nsys.exit(cli.main(['run', '--list']))\n")
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE,
                           timeout=120)
    finally:
        os.close(w)
    assert p.returncode == 141 and p.stderr == b"", p.stderr


def test_a_real_pipeline_into_head() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    cmd = f"set -o pipefail; {sys.executable} -m aero.cli completion bash | head -c 1 " \
          "> /dev/null; echo ${PIPESTATUS[0]}"
    # head may exit before or after aero's last write: 0 (all fitted in the pipe) or 141.
    p = subprocess.run([bash, "-c", cmd], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() in ("0", "141") and "Traceback" not in p.stderr, p.stderr


# ---- --version and completion -----------------------------------------------------------------

def test_version_names_the_package_and_the_core_stamp() -> None:
    import aero
    from aero._core_loader import build_stamps

    code, out, _err = run_main(["--version"])
    built, _sources = build_stamps()
    assert code == 0 and built is not None
    assert out.strip() == f"aero {aero.__version__} (C core {built})"


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_scripts(shell: str, tmp_path: Path) -> None:
    pytest.importorskip("shtab")
    code, out, _err = run_main(["completion", shell])
    assert code == 0
    words = ["record", "replay", "export", "completion", "ls"]
    if shell != "tcsh":  # shtab's tcsh script completes the commands only
        words += ["--checkpoint-interval", "perfetto", "--no-progress"]
    for word in words:
        assert word in out, (shell, word)
    if shell == "bash":
        bash = shutil.which("bash")
        if bash is None:
            pytest.skip("no bash")
        script = tmp_path / "aero.bash"
        script.write_text(out)
        p = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr


# ---- aero ls -----------------------------------------------------------------------------------

def test_ls_lists_traces_and_damaged_files(recorded: Path) -> None:
    (recorded / "junk.aerotrace").write_bytes(b"AERO not really")
    (recorded / "empty.aerotrace").write_bytes(b"")
    code, out, err = run_main(["ls", "--json"])
    assert code == 0, err
    rows = {r["trace"]: r for r in json.loads(out)["traces"]}
    good = rows["rom_hello-0.aerotrace"]
    assert good["guest"] == "rom_hello" and good["complete"] is True and good["latest"]
    assert good["ticks"] > 0 and good["bytes"] == (recorded / good["trace"]).stat().st_size
    assert good["damaged"] is None and good["created"]
    for name in ("junk.aerotrace", "empty.aerotrace"):
        assert rows[name]["damaged"] and rows[name]["complete"] is False
    code, out, _err = run_main(["ls"])
    assert code == 0 and "damaged" in out and "rom_hello" in out


def test_ls_of_an_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path / "none"))
    code, out, _err = run_main(["ls", "--json"])
    assert code == 0 and json.loads(out)["traces"] == []


# ---- progress ----------------------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_plain_lines() -> None:
    clock, stream = _Clock(), io.StringIO()
    p = Progress("recording demo", 2000, unit="ticks", mode="plain", stream=stream,
                 interval=3600, clock=clock)
    with p:
        clock.now += 7
        p.update(500)
        p.emit()
        p.note("replaying")
        p.advance(1500)
        clock.now += 3
        p.emit()
    p.emit()  # after the end: nothing
    assert stream.getvalue().splitlines() == [
        "aero: recording demo: 500 of 2,000 ticks (25%), 7 s",
        "aero: replaying: 2,000 of 2,000 ticks (100%), 10 s"]


def test_progress_thread_reports_every_interval() -> None:
    seen = threading.Event()

    class Stream(io.StringIO):
        def write(self, s: str) -> int:
            seen.set()
            return super().write(s)

    stream = Stream()
    with Progress("bench", mode="plain", stream=stream, interval=0.01):
        assert seen.wait(30)
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("aero: bench: working, ") for line in lines)


def test_progress_off_and_auto_rules() -> None:
    stream = io.StringIO()
    with Progress("x", mode="off", stream=stream, interval=0.001) as p:
        p.emit()
    assert stream.getvalue() == ""
    assert Progress("x", stream=io.StringIO()).mode == "plain"  # not a terminal
    ns = argparse.Namespace
    assert common.progress_mode(ns(json=True, progress=False, no_progress=False)) == "off"
    assert common.progress_mode(ns(json=True, progress=True, no_progress=False)) == "auto"
    assert common.progress_mode(ns(json=False, progress=False, no_progress=True)) == "off"
    assert common.progress_mode(ns(json=False, progress=False, no_progress=False)) == "auto"


def test_a_long_command_reports_progress_off_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "AERO_PROGRESS_INTERVAL": "0.05", "AERO_TRACE_DIR": str(tmp_path)}
    p = aero("fuzz", "cpu", "--examples", "30", "--mode", "real", "--seed", "3", env=env,
             text=True)
    assert p.returncode in (0, 1), p.stderr
    assert "aero: fuzz cpu: " in p.stderr and "examples" in p.stderr
    q = aero("fuzz", "cpu", "--examples", "30", "--mode", "real", "--seed", "3", "--json",
             env=env, text=True)
    assert "aero: fuzz cpu" not in q.stderr
