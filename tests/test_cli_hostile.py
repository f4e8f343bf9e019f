"""Hostile command lines: every option of every command, walked from the parser, with values
that must be refused (negative, zero where it makes no sense, huge, non-numeric, empty,
missing files, directories where files are expected, unwritable paths). Each must end in
exit 2 with exactly one ``aero: error:`` line on stderr and no traceback."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aero import cli

# Values of each grammar that no option of that grammar may accept.
HOSTILE = {
    "integer": ["", " ", "abc", "-5", "-1e3", "1.5", "1e-3", "nan", "inf", "0x", "1__0x",
                str(2**70), "1e70", "1" * 400],
    "size": ["", "0", "-1", "4097", "1K", "abc", "4G", "1.5M", str(2**70), "1e400"],
    "speed": ["", "abc", "xinf", "x-inf", "xnan", "x0", "x-1", "x1e-300", "x1e9", "x",
              "-5", "fast"],
}


# Options for which zero makes no sense, in whatever command they appear.
ZERO_REFUSED = {"--checkpoint-interval", "--keyframe-interval", "--examples", "--chunk",
                "--stall-ticks", "--ticks"}


@pytest.fixture()
def places(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    return {"dir": tmp_path, "file": a_file, "missing": tmp_path / "missing" / "x",
            "under_file": a_file / "x"}


def _hostile(grammar: str, places: dict[str, Path]) -> list[str]:
    if grammar in HOSTILE:
        return HOSTILE[grammar]
    if grammar == "input":
        return ["", str(places["missing"]), str(places["dir"])]
    if grammar == "output":
        return ["", str(places["dir"]), str(places["missing"]), str(places["under_file"])]
    if grammar == "dir":
        return ["", str(places["missing"]), str(places["file"])]
    raise AssertionError(grammar)


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list:
    """(command words, parser) of every command that runs something."""
    out = []
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    for name, child in subs[0].choices.items():
        out += _leaves(child, (*path, name))
    return out


# The least each command needs to parse, given a trace file T and a directory D.
BASE = {
    ("run",): ["rom_hello"], ("record",): ["rom_hello"], ("replay",): ["T"], ("info",): ["T"],
    ("pack",): ["T"], ("seek",): ["T", "0"], ("demo",): [], ("ls",): [],
    ("diff",): ["T", "T"], ("bisect", "config"): ["T", "--set", "tsc_per_tick=3"],
    ("bisect", "build"): ["T", "--other", "python3"],
    ("bisect", "inputs"): ["T", "--oracle", "exit-status:7", "-o", "D/min.aerotrace"],
    ("fingerprints",): ["T", "--at", "0"], ("check",): ["T"],
    ("export",): ["T", "--format", "perfetto"], ("conformance", "sst"): ["D"],
    ("fuzz", "cpu"): [], ("bench",): [], ("completion",): ["bash"],
    ("query",): ["T", "--mem", "0x100"], ("fuzz", "inputs"): ["stats", "--oracle",
                                                             "exit-status:1"],
    ("difftest",): ["rom_hello"],
}


def _accepted(_args: argparse.Namespace) -> int:
    raise AssertionError("a hostile value was accepted by the parser")


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, what: object) -> None:
    assert code == 2, (what, code, err)
    assert err.startswith("aero: error: ") and err.count("\n") == 1, (what, err)
    assert "Traceback" not in err, (what, err)


def test_every_command_has_a_base_command_line() -> None:
    leaves = {path for path, _p in _leaves(cli.build_parser())}
    assert leaves == set(BASE)


def test_every_typed_option_refuses_hostile_values(
        places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = tmp_path / "t.aerotrace"
    trace.write_bytes(b"parsing only looks at the name")
    real = cli.build_parser

    def patched() -> argparse.ArgumentParser:
        parser = real()
        for _path, leaf in _leaves(parser):
            leaf.set_defaults(func=_accepted)
        return parser

    monkeypatch.setattr(cli, "build_parser", patched)
    tried = 0
    for path, leaf in _leaves(real()):
        base = [str(trace) if a == "T" else a.replace("D", str(tmp_path)) for a in BASE[path]]
        for action in leaf._actions:
            grammar = getattr(action.type, "grammar", None)
            if grammar is None:
                continue
            values = _hostile(grammar, places)
            lo, hi = getattr(action.type, "lo", 0), getattr(action.type, "hi", None)
            if lo >= 1 or set(action.option_strings) & ZERO_REFUSED:
                values = [*values, "0", str(lo - 1)]
            if hi is not None and hi < 2**63 - 1:
                values = [*values, str(hi + 1)]
            for value in values:
                if action.option_strings:
                    argv = [*path, *base, action.option_strings[-1], value]
                    if action.required:  # replace the base's value of a required option
                        i = argv.index(action.option_strings[-1])
                        argv = [*argv[:i], *argv[i + 2:], action.option_strings[-1], value]
                else:
                    argv = [*path, *_with_positional(path, base, action, value)]
                code, _out, err = run_main(argv)
                assert_one_line_error(code, err, argv)
                tried += 1
    assert tried > 340


def _with_positional(path: tuple[str, ...], base: list[str], action: argparse.Action,
                     value: str) -> list[str]:
    """``base`` with the positional ``action`` replaced by ``value``."""
    if path == ("diff",):
        return [value, base[1]] if action.dest == "a" else [base[0], value]
    if path == ("seek",):
        return [value, base[1]]
    return [value, *base[1:]]


def test_choices_and_missing_arguments_are_one_line() -> None:
    for argv in (["nosuchcommand"], ["run", "--format", "bogus", "x"], ["export"],
                 ["export", "--format", "svg"], ["completion", "fish"], ["bisect"],
                 ["fuzz", "cpu", "--mode", "long"], ["replay", "--bogus"], ["diff", "x"],
                 ["record"], ["seek"], ["bench", "--no-trace", "--trace-only"],
                 ["replay", "--progress", "--no-progress"]):
        code, _out, err = run_main(argv)
        assert_one_line_error(code, err, argv)


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("hostile") / "t.aerotrace"
    code, _out, err = run_main(["record", "rom_hello", "-o", str(p), "--quiet", "--rtc", "0",
                                "--no-progress"])
    assert code == 1, err  # rom_hello writes 0 to port F4
    return p


def test_values_refused_when_the_command_runs(
        small_trace: Path, places: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AERO_TRACE_DIR", str(tmp_path / "empty"))
    damaged = tmp_path / "damaged.aerotrace"
    raw = bytearray(small_trace.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 16] = bytes(b ^ 0xFF for b in raw[mid:mid + 16])  # inside a closed file
    damaged.write_bytes(bytes(raw))
    junk = tmp_path / "junk.aerotrace"
    junk.write_bytes(b"not a trace")
    empty = tmp_path / "empty.aerotrace"
    empty.write_bytes(b"")
    t = str(small_trace)
    cases = [
        ["run", ""], ["run", str(places["dir"])], ["run", "no-such-guest"],
        ["run"],
        ["run", str(places["file"]), "--format", "multiboot"],
        ["run", str(places["file"]), "--format", "flat", "--load-addr", "0xFFFFFFFF"],
        ["record", ""], ["record", "no-such-guest"], ["record", str(places["dir"])],
        ["record", "rom_hello", "--speed", "x2"],
        ["record", "rom_hello", "--checkpoint-interval", "3", "--keyframe-interval", "10"],
        ["record", "rom_hello", "--input", str(places["file"])],  # not a script
        ["replay"], ["info"], ["pack"], ["check"], ["seek", "0"], ["export", "--format",
                                                                    "perfetto"],
        ["replay", str(junk)], ["replay", str(empty)], ["info", str(junk)],
        ["check", str(junk)], ["pack", str(junk)], ["seek", str(junk), "0"],
        ["export", str(junk), "--format", "perfetto"], ["diff", str(junk), t],
        ["replay", str(damaged)], ["pack", str(damaged)],
        ["seek", t, str(2**62)], ["seek", t, "1", "2"], ["seek", t, "-1"],
        ["check", t, "--oracle", "no-such-oracle"], ["check", t, "--oracle", ""],
        ["check", t, "--oracle", str(places["file"]) + ":Nope"],
        ["check", t, "--readonly", "nonsense"],
        ["export", t, "--format", "tenet"], ["export", t, "--format", "tenet", "--from", "9",
                                             "--to", "9"],
        ["export", t, "--format", "tenet", "--from", "0", "--to", str(2**62)],
        ["export", t, "--format", "perfetto", "--from", "1"],
        ["export", t, "--format", "perfetto", "--violations", str(places["file"])],
        ["export", t, "--format", "perfetto", "--json"],
        ["export", t, "--format", "perfetto", "-o", "/proc/aero-test.json"],
        ["record", "rom_hello", "-o", "/proc/aero-test.aerotrace", "--quiet"],
        ["pack", t, "-o", "/proc/aero-test.aerotrace"],
        ["seek", t, "0", "--save", "/proc/aero-test.aerosnap"],
        ["bisect", "config", t, "--set", "bogus"], ["bisect", "config", t, "--set", "=1"],
        ["bisect", "build", t, "--other", ""], ["bisect", "build", t, "--other", "'"],
        ["bisect", "inputs", t, "--oracle", "exit-status:x", "-o",
         str(tmp_path / "m.aerotrace")],
        ["fingerprints", t, "--at", str(2**62)],
        ["fuzz", "cpu", "--examples", "1", "--classes", "bogus"],
        ["conformance", "sst", str(places["dir"]), "--only", "nosuch"],
    ]
    for argv in cases:
        code, _out, err = run_main(argv)
        assert_one_line_error(code, err, argv)


def test_internal_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only user-input errors become one line: a bug still raises."""
    from aero.cli import run

    def broken(_args: argparse.Namespace) -> int:
        raise ValueError("an internal bug")

    monkeypatch.setattr(run, "cmd_run", broken)
    with pytest.raises(ValueError, match="internal bug"):
        run_main(["run", "--list"])


def aero(*args: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aero.cli", *args], capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_hostile_values_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "AERO_TRACE_DIR": str(tmp_path / "none")}
    for argv in (["run", "--ram", "0", "rom_hello"], ["run", "--ticks", str(2**70), "x"],
                 ["replay", "--speed", "xinf"], ["pack", "latest"], ["check", "latest"],
                 ["record", "rom_hello", "-o", "-"], ["fuzz", "cpu", "--examples", "0"],
                 ["seek", "latest", "-5"], ["export", str(tmp_path), "--format", "tenet"]):
        r = aero(*argv, env=env)
        assert_one_line_error(r.returncode, r.stderr, argv)
        assert r.stdout == ""
