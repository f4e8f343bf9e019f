"""One executor for every campaign: local processes or a Dask cluster.

A campaign is split by example index into chunks of a fixed size (:func:`plan`); chunk
``i`` covers examples ``[i * size, min((i + 1) * size, examples))`` and is seeded from
``(seed, i)`` (:func:`chunk_seed`). A chunk is evaluated by a module-level function
``fn(chunk, params) -> dict`` (picklable, so that it can run in another process or on
another machine) and the chunk results are merged in index order by the campaign.

Invariants:

* The merged result is a pure function of (campaign, params, seed, examples, chunk size):
  neither the number of workers nor the order in which chunks finish changes it. The chunk
  size never depends on the number of workers.
* A chunk whose worker died is retried once (alone); if it fails again it is reported as
  ``not-evaluated`` and never counted as a pass.
* With a results file every finished chunk is appended as one JSON line (flushed and
  fsynced) before the next is reported; :func:`run` with ``resume=True`` reads the file,
  checks that its header describes the same campaign and evaluates only what is missing.
  A torn last line (the process was killed mid-write) is ignored.
* Worker processes started here (a local process pool, a Dask LocalCluster) are ended
  before :func:`run` returns or raises, interrupted or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Chunk", "ChunkOutcome", "ExecutorError", "ExecutorSpec", "NOT_EVALUATED",
           "chunk_seed", "default_jobs", "module_independent_generation",
           "plan", "run"]

NOT_EVALUATED = "not-evaluated"
DEFAULT_CHUNK = 25
DASK_CONNECT_TIMEOUT = 3.0


class ExecutorError(RuntimeError):
    """The executor cannot run the campaign (scheduler unreachable, bad results file)."""


@dataclass(frozen=True)
class Chunk:
    """Examples ``start .. start + count - 1`` of a campaign, seeded with ``seed``."""

    index: int
    start: int
    count: int
    seed: int


@dataclass
class ChunkOutcome:
    """What became of one chunk: ``status`` is ``ok`` (``result`` set) or not-evaluated
    (``error`` says why)."""

    index: int
    status: str
    result: dict | None = None
    error: str | None = None


@dataclass(frozen=True)
class ExecutorSpec:
    """Where chunks run: ``jobs`` local processes (1: in this process), or a Dask scheduler
    at ``dask`` (``local``: a LocalCluster of ``jobs`` worker processes started here)."""

    jobs: int = 1
    dask: str | None = None

    def describe(self) -> str:
        if self.dask is None:
            return f"{self.jobs} local process{'es' if self.jobs != 1 else ''}"
        if self.dask == "local":
            return f"Dask LocalCluster ({self.jobs} workers)"
        return f"Dask scheduler {self.dask}"


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index`` (stable across platforms and Python versions)."""
    h = hashlib.sha256(f"aero-chunk:{seed}:{index}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def plan(examples: int, seed: int, chunk_size: int = DEFAULT_CHUNK) -> list[Chunk]:
    """The chunks of a campaign of ``examples`` examples."""
    if examples < 0 or chunk_size < 1:
        raise ValueError("examples must be >= 0 and chunk size >= 1")
    return [Chunk(i, start, min(chunk_size, examples - start), chunk_seed(seed, i))
            for i, start in enumerate(range(0, examples, chunk_size))]


@contextlib.contextmanager
def module_independent_generation() -> Iterator[None]:
    """Hypothesis (6.13x and later) biases generation toward constants it finds in the
    source of the *local* modules loaded in the process, so the same seed generates other
    examples in a process that has imported other modules (a test runner, a worker).
    Within this context it sees none, so a chunk generates the same examples everywhere."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - another Hypothesis layout
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    constants = getattr(providers, "Constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if original is None or constants is None:
        yield
        return
    empty = constants()
    providers._get_local_constants = lambda: empty
    if cache is not None:
        cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        if cache is not None:
            cache.cache.clear()


# ---- results file ----------------------------------------------------------------------------

def _header(campaign: str, params: dict, examples: int, seed: int, chunk_size: int) -> dict:
    return {"kind": "header", "campaign": campaign, "params": params, "examples": examples,
            "seed": seed, "chunk_size": chunk_size}


def _read_results(path: Path, header: dict) -> dict[int, ChunkOutcome]:
    """The evaluated chunks of a results file (not-evaluated ones are left to redo)."""
    done: dict[int, ChunkOutcome] = {}
    lines = path.read_text().splitlines()
    if not lines:
        return done
    try:
        first = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise ExecutorError(f"{path}: not a campaign results file") from exc
    if first != json.loads(json.dumps(header)):
        raise ExecutorError(f"{path}: results of another campaign (campaign, parameters, "
                            f"seed, examples and chunk size must be the same to resume)")
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        if rec.get("kind") == "chunk" and rec.get("status") == "ok":
            done[int(rec["index"])] = ChunkOutcome(int(rec["index"]), "ok", rec["result"])
    return done


class _Journal:
    """The append-only results file."""

    def __init__(self, path: Path | None, header: dict, resume: bool) -> None:
        self.path = path
        self.fh = None
        if path is None:
            return
        fresh = not (resume and path.exists() and path.stat().st_size > 0)
        self.fh = open(path, "w" if fresh else "a")  # noqa: SIM115 - closed in close()
        if fresh:
            self._write(header)

    def _write(self, rec: dict) -> None:
        assert self.fh is not None
        self.fh.write(json.dumps(rec, sort_keys=True) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def add(self, out: ChunkOutcome) -> None:
        if self.fh is not None:
            self._write({"kind": "chunk", **asdict(out)})

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


# ---- backends ------------------------------------------------------------------------------

Fn = Callable[[Chunk, dict], dict]
Sink = Callable[[ChunkOutcome], None]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _run_inline(fn: Fn, params: dict, chunks: Sequence[Chunk], sink: Sink) -> None:
    for c in chunks:
        sink(ChunkOutcome(c.index, "ok", fn(c, params)))


def _kill_pool(pool: Any) -> None:
    """End a process pool's workers (ours) without waiting for their work."""
    import signal

    procs = list(getattr(pool, "_processes", {}) or {})
    for pid in procs:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _own_resource_tracker() -> Iterator[None]:
    """Worker processes start multiprocessing's resource tracker (a child process that
    would otherwise live as long as this one); end it again if it was not running before."""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    was_running = getattr(tracker, "_pid", None) is not None
    try:
        yield
    finally:
        if not was_running and hasattr(tracker, "_stop"):
            tracker._stop()


def _run_pool(fn: Fn, params: dict, chunks: Sequence[Chunk], jobs: int, sink: Sink) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # no server process outlives the pool

    def batch(todo: Sequence[Chunk], workers: int) -> list[tuple[Chunk, str]]:
        lost: list[tuple[Chunk, str]] = []
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        try:
            futs = {pool.submit(fn, c, params): c for c in todo}
            for f in as_completed(futs):
                c = futs[f]
                try:
                    sink(ChunkOutcome(c.index, "ok", f.result()))
                except BrokenProcessPool as exc:
                    lost.append((c, f"worker process died ({_describe(exc)})"))
        except BaseException:
            _kill_pool(pool)
            raise
        pool.shutdown(wait=True)
        return lost

    with _own_resource_tracker():
        lost = batch(chunks, min(jobs, max(1, len(chunks))))
        for c, _why in sorted(lost, key=lambda x: x[0].index):
            again = batch([c], 1)  # alone, so that it cannot take others down with it
            if again:
                sink(ChunkOutcome(c.index, NOT_EVALUATED, error=again[0][1]))


def _connect(spec: ExecutorSpec) -> tuple[Any, Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ExecutorError("--dask needs Dask's distributed scheduler: "
                            "pip install 'aero[cluster]'") from exc
    if spec.dask == "local":
        cluster = LocalCluster(n_workers=spec.jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=50)
        try:
            return Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    try:
        return Client(spec.dask, timeout=DASK_CONNECT_TIMEOUT), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutorError(f"cannot reach the Dask scheduler at {spec.dask}: "
                            f"{_describe(exc)}") from None


def _run_dask(fn: Fn, params: dict, chunks: Sequence[Chunk], spec: ExecutorSpec,
              sink: Sink, name: str) -> None:
    with _own_resource_tracker():
        _run_dask_client(fn, params, chunks, spec, sink, name)


def _run_dask_client(fn: Fn, params: dict, chunks: Sequence[Chunk], spec: ExecutorSpec,
                     sink: Sink, name: str) -> None:

    client, cluster = _connect(spec)
    try:
        lost = _dask_batch(client, fn, params, chunks, sink, name, 0)
        for c in lost:  # once more, alone, so that it cannot take others down with it
            for again in _dask_batch(client, fn, params, [c], sink, name, 1):
                sink(ChunkOutcome(again.index, NOT_EVALUATED, error=again_error(again)))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


_LOST: dict[int, str] = {}


def again_error(c: Chunk) -> str:
    return _LOST.pop(c.index, "worker lost")


def _dask_batch(client: Any, fn: Fn, params: dict, chunks: Sequence[Chunk], sink: Sink,
                name: str, attempt: int) -> list[Chunk]:
    """Submit ``chunks``; report the evaluated ones, return those whose worker was lost."""
    from distributed import as_completed

    futs = {client.submit(fn, c, params, key=f"aero-{name}-{c.index}-{c.seed:x}-{attempt}",
                          pure=False): c for c in chunks}
    lost: list[Chunk] = []
    for f in as_completed(list(futs)):
        c = futs[f]
        try:
            sink(ChunkOutcome(c.index, "ok", f.result()))
        except Exception as exc:  # KilledWorker, a lost future, or the job's own exception
            if type(exc).__name__ in ("KilledWorker", "FutureCancelledError",
                                      "CancelledError", "CommClosedError"):
                _LOST[c.index] = f"worker lost ({_describe(exc)})"
                lost.append(c)
            else:
                raise
    return sorted(lost, key=lambda c: c.index)


# ---- the campaign loop ---------------------------------------------------------------------

def run(campaign: str, fn: Fn, params: dict, examples: int, seed: int,
        spec: ExecutorSpec, *, chunk_size: int = DEFAULT_CHUNK,
        results: Path | None = None, resume: bool = False,
        progress: Callable[[int], None] | None = None) -> list[ChunkOutcome]:
    """Evaluate every chunk of a campaign; the outcomes in chunk order.

    ``params`` must be JSON-serialisable (it is part of the results file's header).
    ``progress`` is called with the number of examples in chunks finished so far.
    """
    chunks = plan(examples, seed, chunk_size)
    header = _header(campaign, params, examples, seed, chunk_size)
    done: dict[int, ChunkOutcome] = {}
    if resume and results is not None and results.exists():
        done = _read_results(results, header)
    journal = _Journal(results, header, resume)
    outcomes: dict[int, ChunkOutcome] = dict(done)
    finished = [sum(chunks[i].count for i in done if i < len(chunks))]
    if progress is not None:
        progress(finished[0])

    def sink(out: ChunkOutcome) -> None:
        outcomes[out.index] = out
        journal.add(out)
        finished[0] += chunks[out.index].count
        if progress is not None:
            progress(finished[0])

    todo = [c for c in chunks if c.index not in done]
    try:
        if not todo:
            pass
        elif spec.dask is not None:
            _run_dask(fn, params, todo, spec, sink, campaign)
        elif spec.jobs <= 1:
            _run_inline(fn, params, todo, sink)
        else:
            _run_pool(fn, params, todo, spec.jobs, sink)
    finally:
        journal.close()
    return [outcomes[c.index] for c in chunks]


def merge_counts(results: Iterable[dict], keys: Sequence[str]) -> dict[str, int]:
    """Sum the integer fields ``keys`` over chunk results."""
    total = {k: 0 for k in keys}
    for r in results:
        for k in keys:
            total[k] += int(r.get(k, 0))
    return total
