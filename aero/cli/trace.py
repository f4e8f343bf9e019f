"""The trace commands of ``aero``: record, replay, info, pack, seek and demo.

Exit codes follow aero.cli: 0 success, 1 divergence, 2 usage or input error; ``record``
passes the guest's debug-exit status through as ``run`` does; ``replay --check`` uses
0 / 1 / 125 for ``git bisect run``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from aero.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, EXIT_SKIP, CliError


def _int(s: str) -> int:
    try:
        return int(s.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None


def _show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and not getattr(args, "no_progress", False) \
        and sys.stderr.isatty()


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int | None) -> Iterator[
        Callable[[int], None]]:
    """A rich progress bar over guest ticks on stderr, or nothing."""
    if not enabled:
        yield lambda _t: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f} ticks"), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as p:
        task = p.add_task(description, total=total)
        yield lambda t: p.update(task, completed=t)


def _write_out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


# ---- record -------------------------------------------------------------------------------

def add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="run a guest and record it into a trace")
    p.add_argument("guest", help="a bundled guest name (aero run --list) or an image file")
    p.add_argument("-o", "--output", help="trace file (default: the trace directory, with a "
                                          "'latest' link)")
    p.add_argument("--input", help="scripted input file (format: docs/cli.md)")
    p.add_argument("--interactive", action="store_true",
                   help="bridge COM1 to this terminal (Ctrl-A x ends the recording)")
    p.add_argument("--speed", choices=("max", "realtime"), default=None,
                   help="max: as fast as possible (default); realtime: guest time = wall "
                        "time (the default with --interactive)")
    p.add_argument("--ticks", type=_int, default=None, help="stop recording at this tick")
    p.add_argument("--rtc", type=_int, default=None,
                   help="the RTC's wall-clock time at tick 0, Unix seconds (default: now)")
    p.add_argument("--checkpoint-interval", type=_int, default=None)
    p.add_argument("--keyframe-interval", type=_int, default=None)
    p.add_argument("--format", choices=("auto", "flat", "rom", "multiboot"), default="auto")
    p.add_argument("--load-addr", type=_int, default=0x7C00)
    p.add_argument("--ram", type=_int, default=32 << 20, help="RAM size (default 32 MB)")
    p.add_argument("--quiet", action="store_true", help="do not echo the guest's output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_record)


def do_record(args: argparse.Namespace, *, script_text: str | None = None,
              script_name: str = "script") -> tuple[int, dict]:
    """Record as ``args`` say; returns (exit code, summary dict)."""
    from aero.launch import LaunchError, resolve_guest, start_machine, store_image
    from aero.machine import MachineConfig
    from aero.traces import record, script

    try:
        config = MachineConfig(ram_size=args.ram)
        ref, data = resolve_guest(args.guest, args.format, args.load_addr,
                                  ram_size=config.ram_size)
        machine = start_machine(config, ref, data)
        store_image(data)  # only an image that loaded
    except (LaunchError, ValueError) as exc:
        raise CliError(str(exc)) from None
    opt = record.RecordOptions(max_ticks=args.ticks, rtc_time=args.rtc)
    if args.checkpoint_interval:
        opt.checkpoint_interval = args.checkpoint_interval
    if args.keyframe_interval:
        opt.keyframe_interval = args.keyframe_interval
    elif args.checkpoint_interval:
        opt.keyframe_interval = args.checkpoint_interval * 20
    try:
        directives = None
        if script_text is not None:
            directives = script.parse(script_text, script_name)
        elif args.input:
            directives = script.load(args.input)
    except script.ScriptError as exc:
        raise CliError(str(exc)) from None
    tick_hz = machine.config.tick_hz
    if directives is not None:
        opt.script = script.ScriptRunner.paced(directives, tick_hz)
    speed = args.speed or ("realtime" if args.interactive else "max")
    opt.realtime = speed == "realtime"
    path = Path(args.output) if args.output else record.default_trace_path(ref.name)
    echo = not args.json and not args.quiet
    term_ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.interactive:
        from aero.traces.terminal import RawTerminal

        if not sys.stdin.isatty():
            raise CliError("--interactive needs a terminal on stdin")
        term = RawTerminal()
        term_ctx = term
        opt.interactive = term.poll
        opt.stop_requested = lambda: term.quit_requested
    show = _show_progress(args) and not args.interactive and not echo
    try:
        with term_ctx, _progress(show, f"recording {ref.name}", args.ticks) as progress:
            rec = record.Recorder(machine, ref, path, opt,
                                  on_output=(lambda _t, d: _write_out(d)) if echo else None,
                                  on_progress=progress)
            result = rec.run()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    if not args.output:
        record.update_latest(path)
    summary = {"trace": str(path), "guest": ref.name, "ticks": result.ticks,
               "stop": result.stop, "exit_status": result.exit_status,
               "inputs": result.inputs, "device_events": result.device_events,
               "output_events": result.output_events, "checkpoints": result.checkpoints,
               "keyframes": result.keyframes, "digest": result.digest,
               "bytes": path.stat().st_size, "elapsed_seconds": round(result.elapsed, 3)}
    if result.reason:
        summary["reason"] = result.reason
    code = (result.exit_status & 0xFF) if result.stop == "exit" and result.exit_status \
        is not None else EXIT_OK
    if result.stop in ("script-stalled", "script-unreachable", "shutdown"):
        code = EXIT_FAIL  # as `aero run` exits on a triple fault
    return code, summary


def cmd_record(args: argparse.Namespace) -> int:
    code, summary = do_record(args)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"\naero: recorded {summary['ticks']:,} ticks to {summary['trace']} "
              f"({summary['stop']}, {summary['inputs']} inputs, {summary['checkpoints']} "
              f"checkpoints)", file=sys.stderr)
        if summary.get("reason"):
            print(f"aero: {summary['reason']}", file=sys.stderr)
    return code


# ---- replay -------------------------------------------------------------------------------

def _trace_arg(value: str | None) -> Path:
    from aero.traces.record import trace_dir

    if value:
        return Path(value)
    latest = trace_dir() / "latest"
    if not latest.exists():
        raise CliError(f"no trace given and no {latest} (record one first)")
    return latest


def _parse_speed(s: str) -> float | None:
    if s == "instant":
        return None
    if s == "realtime":
        return 1.0
    if s.startswith("x"):
        try:
            v = float(s[1:])
        except ValueError:
            v = 0.0
        if v > 0:
            return v
    raise argparse.ArgumentTypeError(f"speed is instant, realtime or xN (N > 0), not {s!r}")


def add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-execute a trace and verify it")
    p.add_argument("trace", nargs="?", help="trace file (default: the latest recording)")
    p.add_argument("--speed", type=_parse_speed, default=None,
                   help="instant (default), realtime or xN")
    p.add_argument("--until", type=_int, default=None, help="stop at this tick")
    p.add_argument("--check", action="store_true",
                   help="for git bisect run: exit 0 match, 1 divergence, 125 cannot evaluate")
    p.add_argument("--quiet", action="store_true", help="do not re-emit the guest's output")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_replay)


def do_replay(path: Path, *, until: int | None = None, speed: float | None = None,
              echo: bool = False, progress: bool = False):
    from aero.traces.container import open_trace
    from aero.traces.replay import Replayer, load_contents

    trace = open_trace(path)
    contents = load_contents(trace)
    rep = Replayer(contents)
    total = contents.end_tick if until is None else min(until, contents.end_tick)
    with _progress(progress, "replaying", total) as prog:
        return rep.run(until=until, speed=speed, on_progress=prog,
                       on_output=(lambda _t, d: _write_out(d)) if echo else None)


def cmd_replay(args: argparse.Namespace) -> int:
    from aero.traces.container import TraceError
    from aero.traces.replay import ReplayError

    path = _trace_arg(args.trace)
    echo = not args.json and not args.quiet and not args.check
    try:
        result = do_replay(path, until=args.until, speed=args.speed, echo=echo,
                           progress=_show_progress(args) and not echo)
    except (TraceError, ReplayError) as exc:
        if args.check:
            print(f"aero: cannot evaluate: {exc}", file=sys.stderr)
            return EXIT_SKIP
        raise CliError(str(exc)) from None
    except Exception as exc:  # --check must never report an internal error as a divergence
        if args.check:
            print(f"aero: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_SKIP
        raise
    if not result.diverged and not result.evaluated:
        # Nothing readable in the trace (a damaged first frame, a file cut before its first
        # checkpoint): a replay that verified nothing must not pass for a match.
        if args.json:
            print(json.dumps(result.to_dict()))
        print("aero: cannot evaluate: nothing in the trace could be verified (no checkpoint "
              "and no event)", file=sys.stderr)
        return EXIT_SKIP if args.check else EXIT_ERROR
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.diverged:
        d = result.divergence
        assert d is not None
        print(f"\naero: replay DIVERGED at tick {d.tick:,} ({d.what}): {d.detail}",
              file=sys.stderr)
    else:
        print(f"\naero: replay verified: {result.ticks:,} ticks, {result.checkpoints_verified} "
              f"checkpoints, {result.events_verified:,} events, {result.inputs_injected} "
              f"inputs ({result.elapsed:.2f} s)", file=sys.stderr)
    return EXIT_FAIL if result.diverged else EXIT_OK


# ---- info ---------------------------------------------------------------------------------

def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a trace's metadata, counts and integrity")
    p.add_argument("trace", nargs="?", help="trace file (default: the latest recording)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def trace_info(path: Path) -> dict:
    from aero.events import Kind, kind_name
    from aero.traces.container import FrameKind, open_trace
    from aero.traces.replay import load_contents, scan

    trace = open_trace(path)
    c = load_contents(trace)
    frames: dict[str, int] = {}
    for f in trace.frames:
        frames[f.kind_name] = frames.get(f.kind_name, 0) + 1
    s = scan(c)
    by_kind: dict[str, int] = {}
    for k, n in s["by_kind"].items():
        by_kind[kind_name(k)] = by_kind.get(kind_name(k), 0) + n
    digest = s["digest"]
    summary = c.summary or {}
    last = int(summary["ticks"]) if summary else s["last_tick"]
    problems = []
    if not trace.complete:
        problems.append(f"not closed cleanly: recovered up to the last complete frame "
                        f"({trace.recovered_bytes} bytes after it ignored)")
    if summary and summary.get("digest") != digest:
        problems.append("the summary's digest does not match the inputs")
    if not s["checkpoints"]:
        problems.append("no checkpoint: nothing in it can be verified")
    return {
        "trace": str(path), "format_version": trace.version, "complete": trace.complete,
        "aero": trace.metadata.get("aero") if isinstance(trace.metadata.get("aero"), str)
        else None,
        "created": trace.metadata.get("created") if isinstance(trace.metadata.get("created"),
                                                               str) else None,
        "guest": c.guest.to_dict(), "machine": c.config.to_dict(),
        "packed": c.guest.sha256 in c.images,
        "ticks": last, "first_tick": 0, "last_tick": last,
        "events": s["inputs"] + s["device_events"] + s["output_events"],
        "inputs": s["inputs"], "device_events": s["device_events"],
        "output_events": s["output_events"], "events_by_kind": by_kind,
        "checkpoints": s["checkpoints"], "keyframes": len(c.keyframes),
        "frames": frames, "bytes": path.stat().st_size,
        "stop": summary.get("stop"), "exit_status": summary.get("exit_status"),
        "digest": digest, "integrity": "ok" if not problems else "; ".join(problems),
        "output_bytes": s["output_bytes"],
        "has_summary": bool(summary),
        "frame_kinds": sorted(FrameKind.NAMES.values()),
        "input_kinds": sorted(k.name.lower() for k in Kind if k.is_input),
    }


def cmd_info(args: argparse.Namespace) -> int:
    from aero.traces.container import TraceError
    from aero.traces.replay import ReplayError

    path = _trace_arg(args.trace)
    try:
        info = trace_info(path)
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(info))
        return EXIT_OK if info["integrity"] == "ok" else EXIT_FAIL
    from rich.console import Console
    from rich.table import Table

    t = Table(title=str(path), show_header=False)
    rows = [("format version", info["format_version"]), ("recorded by", f"aero {info['aero']}"),
            ("created", info["created"]),
            ("guest", f"{info['guest']['name']} ({info['guest']['fmt']}, sha256 "
                      f"{info['guest']['sha256'][:16]}..., "
                      f"{'packed' if info['packed'] else 'not packed'})"),
            ("ticks", f"0 .. {info['ticks']:,}"),
            ("stop", f"{info['stop']} (exit status {info['exit_status']})"),
            ("events", f"{info['events']:,} ({info['inputs']} inputs, {info['device_events']:,} "
                       f"device, {info['output_events']:,} output)"),
            ("by kind", ", ".join(f"{k} {v:,}" for k, v in sorted(info["events_by_kind"].items()))),
            ("checkpoints", info["checkpoints"]), ("keyframes", info["keyframes"]),
            ("size", f"{info['bytes']:,} bytes"), ("digest", info["digest"]),
            ("complete", info["complete"]), ("integrity", info["integrity"])]
    for k, v in rows:
        t.add_row(k, str(v))
    Console().print(t)
    return EXIT_OK if info["integrity"] == "ok" else EXIT_FAIL


# ---- pack ---------------------------------------------------------------------------------

def add_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="embed the guest image so the trace replays anywhere")
    p.add_argument("trace", nargs="?", help="trace file (default: the latest recording)")
    p.add_argument("-o", "--output", help="write the packed trace here (default: in place)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pack)


def pack_trace(path: Path, out: Path) -> dict:
    from aero.traces import codec
    from aero.traces.container import FrameKind, TraceWriter, open_trace
    from aero.traces.replay import guest_image, load_contents

    trace = open_trace(path)
    c = load_contents(trace)
    if not trace.complete:
        raise CliError(f"{path}: the trace was not closed cleanly; replay it or record again")
    already = c.guest.sha256 in c.images
    data = guest_image(c)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".pack-")
    try:
        # The packed file keeps the mode of the trace it replaces (traces are private, 0600,
        # when aero created them); a new output file is private.
        try:
            mode = stat.S_IMODE(out.stat().st_mode) if out.exists() else 0o600
        except OSError:
            mode = 0o600
        os.fchmod(fd, mode)
        with TraceWriter(tmp, trace.metadata, fd=fd) as w:
            if not already:
                w.append(FrameKind.IMAGE, 0, 0, codec.encode_image(c.guest.name, data))
            for f in trace.frames:
                w.append(f.kind, f.first_tick, f.last_tick, trace.read(f))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"trace": str(out), "image": c.guest.name, "sha256": c.guest.sha256,
            "image_bytes": len(data), "already_packed": already, "bytes": out.stat().st_size}


def cmd_pack(args: argparse.Namespace) -> int:
    from aero.traces.container import TraceError
    from aero.traces.replay import ReplayError

    path = _trace_arg(args.trace)
    out = Path(args.output) if args.output else path.resolve()
    try:
        info = pack_trace(path, out)
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(info))
    else:
        print(f"aero: packed {info['image']} ({info['image_bytes']:,} bytes) into "
              f"{info['trace']}")
    return EXIT_OK


# ---- seek ---------------------------------------------------------------------------------

def add_seek(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seek", help="the machine's state at a tick of a trace (via keyframes)")
    p.add_argument("trace", help="trace file ('latest' for the latest recording)")
    p.add_argument("tick", type=_int)
    p.add_argument("--save", metavar="SNAPSHOT", help="write a snapshot file of that state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_seek)


def cmd_seek(args: argparse.Namespace) -> int:
    import time

    from aero.traces.container import TraceError, open_trace
    from aero.traces.replay import ReplayError, load_contents, seek
    from aero.traces.snapshot import save_snapshot

    path = _trace_arg(None if args.trace == "latest" else args.trace)
    try:
        c = load_contents(open_trace(path, verify=False))
        if args.tick > c.end_tick:
            raise CliError(f"tick {args.tick} is past the trace's end ({c.end_tick})")
        t0 = time.monotonic()
        m, _ = seek(c, args.tick)
        elapsed = time.monotonic() - t0
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    if args.save:
        save_snapshot(m, Path(args.save), c.guest)
    r = m.get_regs()
    state = {"tick": m.ticks, "fingerprint": f"{m.fingerprint():016x}",
             "seek_seconds": round(elapsed, 4), "eip": r.eip, "eflags": r.eflags,
             "cs": r.cs.selector, "cpl": r.cpl, "halted": r.halted,
             "regs": {k: getattr(r, k) for k in ("eax", "ebx", "ecx", "edx", "esi", "edi",
                                                 "ebp", "esp")}}
    if args.json:
        print(json.dumps(state))
    else:
        print(f"tick {state['tick']:,}  fingerprint {state['fingerprint']}  "
              f"({elapsed * 1000:.1f} ms to seek)")
        print(f"cs:eip {r.cs.selector:04x}:{r.eip:08x}  eflags {r.eflags:08x}  cpl {r.cpl}"
              f"{'  halted' if r.halted else ''}")
        print("  ".join(f"{k} {v:08x}" for k, v in state["regs"].items()))
    return EXIT_OK


# ---- demo ---------------------------------------------------------------------------------

def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="record and replay the bundled demo guest with scripted "
                                    "input, then show what happened")
    p.add_argument("-o", "--output", help="trace file (default: the trace directory)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from aero import guests

    script_path = guests.SOURCE_DIR / "demo.script"
    try:
        text = script_path.read_text()
    except OSError as exc:
        raise CliError(f"{script_path}: {exc.strerror}") from None
    rec_args = argparse.Namespace(
        guest="demo", output=args.output, input=None, interactive=False, speed="max",
        ticks=20_000_000_000, rtc=1_790_000_000, checkpoint_interval=None,
        keyframe_interval=None, format="auto", load_addr=0x7C00, ram=32 << 20,
        quiet=args.json, json=args.json, no_progress=True)
    if not args.json:
        print("== recording the demo guest with guests/demo.script ==", file=sys.stderr)
    code, summary = do_record(rec_args, script_text=text, script_name=str(script_path))
    path = Path(summary["trace"])
    if not args.output:
        from aero.traces.record import update_latest

        update_latest(path)
    if not args.json:
        print(f"\n== replaying {path} ==", file=sys.stderr)
    result = do_replay(path, progress=_show_progress(args))
    info = trace_info(path)
    out = {"record": summary, "replay": result.to_dict(),
           "trace": {k: info[k] for k in ("format_version", "ticks", "events", "complete",
                                          "digest", "bytes", "checkpoints", "keyframes")}}
    if args.json:
        print(json.dumps(out))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="aero demo")
        t.add_column("")
        t.add_column("record")
        t.add_column("replay")
        t.add_row("ticks", f"{summary['ticks']:,}", f"{result.ticks:,}")
        t.add_row("stop / exit status", f"{summary['stop']} / {summary['exit_status']}",
                  f"{result.stop} / {result.exit_status}")
        t.add_row("inputs", str(summary["inputs"]), str(result.inputs_injected))
        t.add_row("events", f"{summary['device_events'] + summary['output_events']:,}",
                  f"{result.events_verified:,} verified")
        t.add_row("checkpoints", str(summary["checkpoints"]),
                  f"{result.checkpoints_verified} verified")
        t.add_row("seconds", f"{summary['elapsed_seconds']:.2f}", f"{result.elapsed:.2f}")
        Console(stderr=True).print(t)
        verdict = ("[red]DIVERGED at tick " + f"{result.divergence.tick:,}[/red]"
                   if result.divergence else "[green]bit-exact[/green]")
        Console(stderr=True).print(f"replay: {verdict}; trace {path} "
                                   f"({info['bytes']:,} bytes, digest {info['digest'][:16]})")
        Console(stderr=True).print("next: aero info, aero replay --speed realtime, "
                                   "aero seek latest TICK")
    if result.diverged:
        return EXIT_FAIL
    return EXIT_OK if summary["stop"] in ("exit", "idle", "halt") else EXIT_ERROR


COMMANDS = (add_record, add_replay, add_info, add_pack, add_seek, add_demo)
