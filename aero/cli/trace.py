"""The trace commands of ``aero``: record, replay, info, pack, seek and demo.

Exit codes follow aero.cli: 0 success, 1 divergence, 2 usage or input error; ``record``
passes the guest's debug-exit status through as ``run`` does; ``replay --check`` uses
0 / 1 / 125 for ``git bisect run``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import stat
import sys
import tempfile
from pathlib import Path

from aero.cli.common import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_SKIP,
    STDIO,
    CliError,
    add_guest_options,
    add_progress_options,
    add_trace_argument,
    console,
    integer,
    interval,
    mark_path,
    output_file,
    progress,
    script_file,
    speed,
    tick,
    trace_path,
    write_stdout,
)

# ---- record -------------------------------------------------------------------------------

def add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="run a guest and record it into a trace")
    mark_path(p.add_argument("guest", help="a bundled guest name (aero run --list) or an "
                                           "image file"))
    mark_path(p.add_argument("-o", "--output", type=output_file("trace"),
                             help="trace file (default: the trace directory, with a 'latest' "
                                  "link); not '-': a trace needs a seekable file"))
    mark_path(p.add_argument("--input", type=script_file, metavar="FILE",
                             help="scripted input file, '-' for stdin, or a script shipped "
                                  "with the guests (linux.script, demo.script); format: "
                                  "docs/cli.md"))
    p.add_argument("--interactive", action="store_true",
                   help="bridge COM1 to this terminal (Ctrl-A x ends the recording)")
    p.add_argument("--speed", type=speed, default=None, metavar="max|realtime",
                   help="max: as fast as possible (the default); realtime (or x1): guest "
                        "time = wall time (the default with --interactive); the xN factors "
                        "of replay are not available when recording")
    p.add_argument("--ticks", type=integer("tick count", lo=1), default=None,
                   help="stop recording at this tick")
    p.add_argument("--rtc", type=integer("RTC time", hi=2**40), default=None,
                   metavar="SECONDS",
                   help="the RTC's wall-clock time at tick 0, Unix seconds (default: now)")
    p.add_argument("--checkpoint-interval", type=interval, default=None, metavar="TICKS",
                   help="ticks between state-fingerprint checkpoints (default 10,000,000)")
    p.add_argument("--keyframe-interval", type=interval, default=None, metavar="TICKS",
                   help="ticks between keyframes, the full states seek starts from (default "
                        "20 checkpoint intervals)")
    add_guest_options(p)
    p.add_argument("--quiet", action="store_true", help="do not echo the guest's output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--screen", action="store_true",
                   help="show the VGA text screen at the end (with --json: a 'screen' list)")
    add_progress_options(p)
    p.set_defaults(func=cmd_record)


def do_record(args: argparse.Namespace, *, script_text: str | None = None,
              script_name: str = "script") -> tuple[int, dict]:
    """Record as ``args`` say; returns (exit code, summary dict). Every check of the
    arguments comes before the trace file is created."""
    from aero.cli.run import start_guest
    from aero.launch import store_image
    from aero.traces import record, script

    if args.speed is not None and args.speed not in (1.0, math.inf):
        raise CliError(f"record --speed is max or realtime (x1); x{args.speed:g} is for replay")
    opt = record.RecordOptions(max_ticks=args.ticks, rtc_time=args.rtc)
    if args.checkpoint_interval:
        opt.checkpoint_interval = args.checkpoint_interval
    if args.keyframe_interval:
        opt.keyframe_interval = args.keyframe_interval
    elif args.checkpoint_interval:
        opt.keyframe_interval = args.checkpoint_interval * 20
    if opt.keyframe_interval % opt.checkpoint_interval:
        raise CliError(f"the keyframe interval ({opt.keyframe_interval:,}) must be a multiple "
                       f"of the checkpoint interval ({opt.checkpoint_interval:,})")
    try:
        directives = None
        if script_text is not None:
            directives = script.parse(script_text, script_name)
        elif args.input == STDIO:
            directives = script.parse(sys.stdin.read(), "<stdin>")
        elif args.input:
            directives = script.load(args.input)
    except script.ScriptError as exc:
        raise CliError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{args.input}: {getattr(exc, 'strerror', None) or exc}") from None
    resolved, machine = start_guest(args)
    ref = resolved.ref
    for image in resolved.images.values():  # the guest image and, for Linux, the initrd
        store_image(image)
    tick_hz = machine.config.tick_hz
    if directives is not None:
        opt.script = script.ScriptRunner.paced(directives, tick_hz)
    realtime = args.speed == 1.0 if args.speed is not None else args.interactive
    opt.realtime = realtime
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
    # No bar over the guest's output on the same terminal, nor over an interactive session.
    mode = "off" if args.interactive or (echo and sys.stdout.isatty()) else None
    try:
        with term_ctx, progress(args, f"recording {ref.name}", args.ticks, "ticks",
                                mode=mode) as prog:
            rec = record.Recorder(machine, ref, path, opt,
                                  on_output=(lambda _t, d: write_stdout(d)) if echo else None,
                                  on_progress=prog.update)
            result = rec.run()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise CliError(f"{path}: {exc.strerror}") from None
    if not args.output:
        record.update_latest(path)
    from aero.cli.run import save_disk

    save_disk(args, machine)
    summary = {"trace": str(path), "guest": ref.name, "ticks": result.ticks,
               "stop": result.stop, "exit_status": result.exit_status,
               "inputs": result.inputs, "device_events": result.device_events,
               "output_events": result.output_events, "checkpoints": result.checkpoints,
               "keyframes": result.keyframes, "digest": result.digest,
               "bytes": path.stat().st_size, "elapsed_seconds": round(result.elapsed, 3)}
    if result.reason:
        summary["reason"] = result.reason
    if getattr(args, "screen", False):
        summary["screen"] = machine.screen()
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
        if "screen" in summary:
            print("\n" + "\n".join(summary["screen"]).rstrip("\n"))
        print(f"\naero: recorded {summary['ticks']:,} ticks to {summary['trace']} "
              f"({summary['stop']}, {summary['inputs']} inputs, {summary['checkpoints']} "
              f"checkpoints)", file=sys.stderr)
        if summary.get("reason"):
            print(f"aero: {summary['reason']}", file=sys.stderr)
    return code


# ---- replay -------------------------------------------------------------------------------

def add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-execute a trace and verify it")
    add_trace_argument(p)
    p.add_argument("--speed", type=speed, default=None, metavar="max|realtime|xN",
                   help="max: as fast as possible (the default; 'instant' is the same); "
                        "realtime: guest time = wall time; xN: N times real time "
                        "(0.001 <= N <= 1000)")
    p.add_argument("--until", type=tick, default=None, metavar="TICK",
                   help="stop at this tick")
    p.add_argument("--check", action="store_true",
                   help="for git bisect run: exit 0 match, 1 divergence, 125 cannot evaluate")
    p.add_argument("--quiet", action="store_true", help="do not re-emit the guest's output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_progress_options(p)
    p.add_argument("--gdb", metavar="[HOST:]PORT",
                   help="serve the replay to gdb (remote protocol) instead: docs/debugging.md")
    p.add_argument("--platform", type=integer("platform revision", lo=0), default=None,
                   metavar="REV",
                   help="replay on this platform revision instead of the recorded one (0: "
                        "before the PIIX3 functions, fw_cfg, IDE and VGA, for a trace that "
                        "records no revision and diverges; docs/trace-format.md)")
    mark_path(p.add_argument("--disk", metavar="FILE", default=None,
                             help="the disk image of a trace that references it (not packed) "
                                  "when the image store lacks it; it must hash to the recorded "
                                  "image (a disk that changed since is an error)"))
    p.set_defaults(func=cmd_replay)


def do_replay(path: Path, *, until: int | None = None, speed: float | None = None,
              echo: bool = False, prog=None, disk: str | None = None,
              platform: int | None = None):  # noqa: ANN001, ANN201
    """Replay ``path`` (speed None or inf: as fast as possible); ``prog`` is an
    aero.progress.Progress or None; ``disk``: a file holding the trace's disk image;
    ``platform``: a platform revision to replay on instead of the recorded one."""
    import dataclasses

    from aero.traces.container import open_trace
    from aero.traces.replay import Replayer, load_contents, supply_disk

    trace = open_trace(path)
    contents = load_contents(trace)
    if disk is not None:
        from aero.launch import LaunchError, read_input
        from aero.loader import MAX_IMAGE_BYTES

        try:
            data = read_input(disk, "disk image", MAX_IMAGE_BYTES)
        except LaunchError as exc:
            raise CliError(str(exc)) from None
        supply_disk(contents, data, disk)
    config = None
    if platform is not None:
        try:
            config = dataclasses.replace(contents.config, platform=platform)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    rep = Replayer(contents)
    if prog is not None:
        prog.set_total(contents.end_tick if until is None else min(until, contents.end_tick))
    return rep.run(until=until, speed=None if speed is None or math.isinf(speed) else speed,
                   on_progress=prog.update if prog is not None else None,
                   on_output=(lambda _t, d: write_stdout(d)) if echo else None,
                   config=config)


def cmd_replay(args: argparse.Namespace) -> int:
    from aero.traces.container import TraceError
    from aero.traces.replay import ReplayError

    path = trace_path(args.trace)
    if args.gdb:
        from aero.cli.query import serve_gdb
        return serve_gdb(path, args.gdb, 0)
    echo = not args.json and not args.quiet and not args.check
    mode = "off" if echo and sys.stdout.isatty() else None
    try:
        with progress(args, "replaying", None, "ticks", mode=mode) as prog:
            result = do_replay(path, until=args.until, speed=args.speed, echo=echo,
                               prog=prog, disk=args.disk, platform=args.platform)
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
        if args.platform is None and "platform" not in load_metadata_machine(path):
            print("aero: the trace records no platform revision (taken as 1, the platform "
                  "since the PIIX3 functions, fw_cfg, IDE and VGA); a trace recorded before "
                  "them replays with --platform 0", file=sys.stderr)
    else:
        print(f"\naero: replay verified: {result.ticks:,} ticks, {result.checkpoints_verified} "
              f"checkpoints, {result.events_verified:,} events, {result.inputs_injected} "
              f"inputs ({result.elapsed:.2f} s)", file=sys.stderr)
    return EXIT_FAIL if result.diverged else EXIT_OK


def load_metadata_machine(path: Path) -> dict:
    """The machine configuration as the trace's metadata gives it (keys as recorded)."""
    from aero.traces.container import open_trace

    machine = open_trace(path, verify=False).metadata.get("machine")
    return machine if isinstance(machine, dict) else {}


# ---- info ---------------------------------------------------------------------------------

def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a trace's metadata, counts and integrity")
    add_trace_argument(p)
    p.add_argument("--json", action="store_true", help="print the information as JSON")
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
        "packed": all(h in c.images for h in c.guest.image_hashes()),
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

    path = trace_path(args.trace)
    try:
        info = trace_info(path)
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(info))
        return EXIT_OK if info["integrity"] == "ok" else EXIT_FAIL
    from rich.table import Table

    t = Table(title=str(path), show_header=False)
    rows = [("format version", info["format_version"]), ("recorded by", f"aero {info['aero']}"),
            ("created", info["created"]),
            ("platform", f"revision {info['machine'].get('platform', 1)}"
                         + ("" if "platform" in info["machine"] else
                            " (none recorded: a trace from before platform revisions)")),
            ("guest", f"{info['guest']['name']} ({info['guest']['fmt']}, sha256 "
                      f"{info['guest']['sha256'][:16]}..., "
                      f"{'packed' if info['packed'] else 'not packed'})"),
            *([("disk", f"{info['guest']['disk_size']:,} bytes, sha256 "
                        f"{info['guest']['disk_sha256'][:16]}..."
                        + (", writable (copy-on-write overlay in the keyframes)"
                           if info["guest"].get("disk_writable") else ""))]
              if info["guest"].get("disk_sha256") else []),
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
    console().print(t)
    return EXIT_OK if info["integrity"] == "ok" else EXIT_FAIL


# ---- pack ---------------------------------------------------------------------------------

def add_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="embed the guest image so the trace replays anywhere")
    add_trace_argument(p)
    mark_path(p.add_argument("-o", "--output", type=output_file("trace"),
                             help="write the packed trace here (default: in place); not '-'"))
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_pack)


def pack_trace(path: Path, out: Path) -> dict:
    from aero.traces import codec
    from aero.traces.container import FrameKind, TraceWriter, open_trace
    from aero.traces.replay import guest_images, load_contents

    trace = open_trace(path)
    c = load_contents(trace)
    if not trace.complete:
        raise CliError(f"{path}: the trace was not closed cleanly; replay it or record again")
    images = guest_images(c)  # the guest image and, for Linux, the initrd
    missing = [h for h in c.guest.image_hashes() if h not in c.images]
    already = not missing
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".pack-")
    try:
        # The packed file keeps the mode of the trace it replaces (traces are private, 0600,
        # when aero created them); a new output file is private.
        try:
            mode = stat.S_IMODE(out.stat().st_mode) if out.exists() else 0o600
        except OSError:
            mode = 0o600
        os.fchmod(fd, mode)
        with TraceWriter(tmp, trace.metadata, fd=fd, version=trace.version) as w:
            for h in missing:
                name = c.guest.name if h == c.guest.sha256 else \
                    f"{c.guest.name} disk" if h == c.guest.disk_sha256 else \
                    f"{c.guest.name} VGA BIOS" if h == c.guest.vgarom_sha256 else \
                    f"{c.guest.name} initrd"
                w.append(FrameKind.IMAGE, 0, 0, codec.encode_image(name, images[h]))
            for f in trace.frames:
                w.append(f.kind, f.first_tick, f.last_tick, trace.read(f))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"trace": str(out), "image": c.guest.name, "sha256": c.guest.sha256,
            "images": len(images), "image_bytes": sum(len(d) for d in images.values()),
            "already_packed": already, "bytes": out.stat().st_size}


def cmd_pack(args: argparse.Namespace) -> int:
    from aero.traces.container import TraceError
    from aero.traces.replay import ReplayError

    path = trace_path(args.trace)
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
    p = sub.add_parser("seek", help="the machine's state at a tick of a trace (via keyframes)",
                       usage="aero seek [-h] [TRACE] TICK [--save SNAPSHOT] [--json] "
                             "[--gdb [HOST:]PORT]")
    mark_path(p.add_argument("args", nargs="+", metavar="[TRACE] TICK",
                             help="a trace file or 'latest' (the default: the latest "
                                  "recording), then the tick"))
    mark_path(p.add_argument("--save", metavar="SNAPSHOT", type=output_file("snapshot"),
                             help="write a snapshot file of that state (not '-')"))
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.add_argument("--gdb", metavar="[HOST:]PORT",
                   help="serve the replay to gdb from this tick: docs/debugging.md")
    p.set_defaults(func=cmd_seek)


def _seek_args(values: list[str]) -> tuple[Path, int]:
    """``[TRACE] TICK`` of aero seek, both checked."""
    from aero.cli.common import parse_int, resolve_trace

    if len(values) > 2:
        raise CliError(f"seek: too many arguments: {' '.join(values[2:])}")
    try:
        at = parse_int(values[-1], what="tick")
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"seek: argument TICK: {exc}") from None
    return resolve_trace(values[0] if len(values) == 2 else None), at


def cmd_seek(args: argparse.Namespace) -> int:
    import time

    from aero.traces.container import TraceError, open_trace
    from aero.traces.replay import ReplayError, load_contents, seek
    from aero.traces.snapshot import save_snapshot

    path, at = _seek_args(args.args)
    if args.gdb:
        from aero.cli.query import serve_gdb
        return serve_gdb(path, args.gdb, at)
    try:
        c = load_contents(open_trace(path, verify=False))
        if at > c.end_tick:
            raise CliError(f"tick {at:,} is past the trace's end ({c.end_tick:,})")
        t0 = time.monotonic()
        m, _ = seek(c, at)
        elapsed = time.monotonic() - t0
    except (TraceError, ReplayError) as exc:
        raise CliError(str(exc)) from None
    if args.save:
        try:
            save_snapshot(m, Path(args.save), c.guest)
        except OSError as exc:
            raise CliError(f"{args.save}: {exc.strerror}") from None
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
    mark_path(p.add_argument("-o", "--output", type=output_file("trace"),
                             help="trace file (default: the trace directory, with a 'latest' "
                                  "link); not '-'"))
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_progress_options(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from aero import guests

    script_path = guests.SOURCE_DIR / "demo.script"
    try:
        text = script_path.read_text()
    except OSError as exc:
        raise CliError(f"{script_path}: {exc.strerror}") from None
    rec_args = argparse.Namespace(
        guest="demo", output=args.output, input=None, interactive=False, speed=math.inf,
        ticks=20_000_000_000, rtc=1_790_000_000, checkpoint_interval=None,
        keyframe_interval=None, format="auto", load_addr=0x7C00, ram=32 << 20,
        ram_default=32 << 20, initrd=None, append=None, disk=None, disk_save=None,
        quiet=args.json, json=args.json, no_progress=True, progress=False)
    if not args.json:
        print("== recording the demo guest with guests/demo.script ==", file=sys.stderr)
    code, summary = do_record(rec_args, script_text=text, script_name=str(script_path))
    path = Path(summary["trace"])
    if not args.output:
        from aero.traces.record import update_latest

        update_latest(path)
    if not args.json:
        print(f"\n== replaying {path} ==", file=sys.stderr)
    with progress(args, "replaying", None, "ticks") as prog:
        result = do_replay(path, prog=prog)
    info = trace_info(path)
    out = {"record": summary, "replay": result.to_dict(),
           "trace": {k: info[k] for k in ("format_version", "ticks", "events", "complete",
                                          "digest", "bytes", "checkpoints", "keyframes")}}
    if args.json:
        print(json.dumps(out))
    else:
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
        console(stderr=True).print(t)
        verdict = ("[red]DIVERGED at tick " + f"{result.divergence.tick:,}[/red]"
                   if result.divergence else "[green]bit-exact[/green]")
        console(stderr=True).print(f"replay: {verdict}; trace {path} "
                                   f"({info['bytes']:,} bytes, digest {info['digest'][:16]})")
        console(stderr=True).print("next: aero info, aero replay --speed realtime, "
                                   "aero seek latest TICK")
    if result.diverged:
        return EXIT_FAIL
    return EXIT_OK if summary["stop"] in ("exit", "idle", "halt") else EXIT_ERROR


COMMANDS = (add_record, add_replay, add_info, add_pack, add_seek, add_demo)
