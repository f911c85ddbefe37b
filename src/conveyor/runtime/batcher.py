"""The dynamic batcher of one model version: a bounded queue and one worker thread that merges requests.

Callers await on their event loop; the worker blocks on the queue (no polling), runs ONNX Runtime (which
releases the GIL) and hands results back with one ``call_soon_threadsafe`` per batch. A request that arrives
alone, for a model whose last run was short, runs inline on the caller's loop instead: nothing to batch, so
no thread handoff, timer or wake-up to pay. Past a full queue, such a model's requests join the loop's batch,
which the loop runs at the end of its pass (``Batcher.admit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from time import perf_counter

from conveyor.errors import ConveyorError, DeadlineExceeded, InferenceFailed, Overloaded, Unavailable
from conveyor.observe.collectors import BatcherSnapshot, track_batcher, untrack_batcher
from conveyor.observe.recorder import BatchMetrics
from conveyor.runtime.batching import Array, BatchingConfig, batch_key, merge, split
from conveyor.runtime.onnx_model import OnnxModel

log = logging.getLogger("conveyor.runtime")
# A lone request runs inline on the event loop only if the model's last run took at most this long: the loop
# is blocked meanwhile, so a slow model always goes through the worker (and keeps its deadline timer). 1 ms
# is about what the saved handoff costs at worst on a loaded 2-core machine, far below any request timeout.
INLINE_MAX_RUN_S = 0.001
# Runs are timed on the running thread's CPU clock: a wall clock would count the wait for the GIL after
# ONNX Runtime returns (up to the switch interval, 5 ms, while an event loop is busy) and the time the OS
# gave the core to another process, and make a 20 µs model look slow exactly when the machine is busiest
# and the loop most needs to run queued requests itself (admit). ONNX Runtime's calling thread works its
# share of a parallel run, so a model that is slow in CPU still reads slow.
_cpu = time.thread_time
_QUEUED, _STARTED, _DROPPED = 0, 1, 2
Result = list[Array] | ConveyorError


class _Job:
    """One request on its way through the queue; ``state`` changes under the batcher's lock."""

    __slots__ = ("feeds", "future", "key", "loop", "names", "queued_at", "rows", "state")

    def __init__(
        self,
        feeds: dict[str, Array],
        names: list[str],
        rows: int,
        key: Hashable | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.feeds, self.names, self.rows, self.key, self.loop = feeds, names, rows, key, loop
        self.future: asyncio.Future[list[Array]] = loop.create_future()
        self.state = _QUEUED
        self.queued_at = perf_counter()  # conveyor_queue_duration_seconds: until its run starts


@dataclass(slots=True)
class BatcherStats:
    """What the batcher did, for tests, logs and metrics."""

    requests: int = 0  # requests run, merged or alone
    runs: int = 0  # ONNX Runtime calls
    largest_batch: int = 0  # most rows in one merged call
    batch_rows: Counter[int] = field(default_factory=Counter)  # rows of a merged call -> how many calls
    rejected: int = 0  # refused with Overloaded
    expired: int = 0  # failed with DeadlineExceeded
    fallbacks: int = 0  # merged calls that failed and were rerun one request at a time
    inline: int = 0  # lone requests run on the caller's event loop, without the worker
    loop_batches: int = 0  # loop's batches run past a full queue (see Batcher.admit)


def _rows_of(feeds: Mapping[str, Array]) -> int:
    """Rows of one request: its first input's leading dimension (1 for a scalar or no input)."""
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def _resolve(jobs: Sequence[_Job], results: Sequence[Result]) -> None:
    for job, result in zip(jobs, results, strict=True):
        if job.future.done():  # timed out or cancelled meanwhile
            continue
        if isinstance(result, ConveyorError):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)


class Batcher:
    """Queues requests for ``model`` and runs them, merged when the model and the requests allow it."""

    def __init__(self, model: OnnxModel, config: BatchingConfig) -> None:
        self.model = model
        self.config = config
        self.stats = BatcherStats()
        self._merging = model.batchable and config.max_batch_size > 1
        self._delay_s = config.max_queue_delay_us / 1e6
        self._timeout_s = config.request_timeout_ms / 1000
        self._inputs = [t.name for t in model.signature.inputs]
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0  # queued and neither started nor dropped: what max_queue_size bounds
        self._busy = 0  # started, results not yet handed back
        self._closed = False
        self._last_rows = 0
        self._last_run_s = float("inf")  # unknown until the first run: the first request goes to the worker
        self._arriving = 0  # submit calls deciding between inline and queued (see _alone)
        self._loop_batch: list[_Job] = []  # past a full queue of a fast model, for the loop to run (admit)
        self._loop_rows = 0
        self._flush_due = False  # a _flush is scheduled on a loop
        label = model.name if model.version is None else f"{model.name}:{model.version}"
        self._label = label
        self.metrics = BatchMetrics()  # updated under the lock, read at scrape (metrics_snapshot)
        self._thread = threading.Thread(target=self._work, name=f"conveyor-batcher-{label}", daemon=True)
        self._thread.start()
        track_batcher(self)

    async def submit(
        self, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None
    ) -> dict[str, Array]:
        """The requested outputs (all by default) for one request, run alone or merged with others."""
        # Checked before queueing, so a bad request fails alone (InvalidInput) and never spoils a batch.
        feeds, names = self.model.prepare(inputs, outputs)
        if self._inline_ok() and await self._alone():
            results = self._run_inline(feeds, names)
            if results is not None:
                return dict(zip(names, results, strict=True))
        keyed = batch_key(feeds, self._inputs, names) if self._merging else None  # only queued requests merge
        rows, key = keyed if keyed is not None else (0, None)
        loop = asyncio.get_running_loop()
        job = _Job(feeds, names, rows, key, loop)
        timer = None
        if self._enter(job):  # queued for the worker; else in the loop's batch, run before the pass ends
            timer = loop.call_later(self._timeout_s, self._expire, job)
            self._queue.put(job)
        try:
            results = await job.future
        finally:
            if timer is not None:
                timer.cancel()
            if job.future.cancelled():
                self._drop(job)
        return dict(zip(names, results, strict=True))

    def _enter(self, job: _Job) -> bool:
        """Take a place for ``job``: True in the worker's queue (the caller puts it there), False in the
        loop's batch (see admit). Overloaded when the queue is full and the model is not fast (or has
        become slow since admit() let the request in); Unavailable once closed."""
        cap = self.config.max_batch_size
        with self._lock:
            if self._closed:
                raise Unavailable(f"model {self._label!r} is shutting down")
            if self._waiting < self.config.max_queue_size:
                self._waiting += 1
                return True
            if self._last_run_s > INLINE_MAX_RUN_S:
                raise self._overloaded()
            self._waiting += 1  # counted as waiting, so requests behind it join it rather than the queue
            batch = self._loop_batch
            batch.append(job)
            self._loop_rows += job.rows
            # Full when it and the queue ahead of it (which the run takes too) make a batch.
            full = self._waiting >= cap or self._loop_rows >= cap
            schedule = not full and not self._flush_due
            self._flush_due = self._flush_due or schedule
        if full:
            self._flush()
        elif schedule:
            job.loop.call_soon(self._flush)
        return False

    def metrics_snapshot(self) -> BatcherSnapshot:
        """Queue depth, requests held (queued or running) and a copy of the histograms, for a scrape."""
        with self._lock:
            held = self._waiting + self._busy
            copy = self.metrics.copy()
            waiting = self._waiting
        return BatcherSnapshot(self.model.name, self.model.version or "", waiting, held, copy)

    def admit(self) -> None:
        """Return if one more request may be taken, else raise Overloaded: called before a request is
        decoded, so a refusal costs no parsing and no tensors.

        A full queue of a fast model's requests is not a reason to refuse: it means the worker thread is
        behind (it needs the GIL, which a busy event loop holds for up to the switch interval), not that
        the model is, and for such a model an answer costs the server about what a refusal does. The
        request is let in; once decoded, it joins the loop's batch instead of the queue: the requests that
        found the queue full in this pass of the event loop, run by the loop itself at the end of the pass,
        together with whatever the worker has not yet taken from the queue, in calls of up to
        ``max_batch_size`` rows (docs/batching.md, "Overload"). Goodput stays at what the server can do
        instead of collapsing into refusals, in big batches, and the worker is left asleep. A slow
        model's full queue is refused at once. A request let through may still be refused by ``submit`` if
        the model has become slow meanwhile."""
        if self._waiting >= self.config.max_queue_size and self._last_run_s > INLINE_MAX_RUN_S:
            with self._lock:
                raise self._overloaded()

    def _overloaded(self) -> Overloaded:
        self.stats.rejected += 1  # under the lock
        return Overloaded(
            f"model {self._label!r} has {self._waiting} requests waiting, its max_queue_size; retry later"
        )

    def run_now(
        self, inputs: Mapping[str, Array], outputs: Sequence[str] | None = None
    ) -> dict[str, Array] | None:
        """``submit`` for a request its caller knows arrived alone (nothing else in flight, nothing else
        received with it): run inline now, without the loop pass ``submit`` spends looking for company.
        None when the model is not known to be fast or the worker is busy: then ``submit`` it."""
        feeds, names = self.model.prepare(inputs, outputs)
        if not self._inline_ok():
            return None
        results = self._run_inline(feeds, names)
        return None if results is None else dict(zip(names, results, strict=True))

    def _inline_ok(self) -> bool:
        """The model's runs are short and its worker has nothing: a lone request may run on the loop."""
        return self._last_run_s <= INLINE_MAX_RUN_S and self._waiting == 0 and self._busy == 0

    async def _alone(self) -> bool:
        """True when no other request arrives in this loop pass: then there is nothing to batch with.

        Requests that reach the loop together (a burst, or load the loop cannot keep up with) all yield once
        here, see each other in ``_arriving``, and go to the queue, where they merge.
        """
        self._arriving += 1
        try:
            await asyncio.sleep(0)
        finally:
            self._arriving -= 1
        return self._arriving == 0

    def _run_inline(self, feeds: dict[str, Array], names: list[str]) -> list[Array] | None:
        """Run one request on the calling thread while the worker is idle; None if it no longer is."""
        with self._lock:
            if self._closed or self._waiting or self._busy:
                return None  # the queued path refuses (closed) or joins the others
            self._busy += 1
            self.stats.requests += 1
            self.stats.runs += 1
            self.stats.inline += 1
        wall = perf_counter()
        try:
            start = _cpu()
            results = self.model.run(feeds, names)
            self._last_run_s = _cpu() - start
            self._last_rows = 0  # alone: the next lone request need not wait for a batch
            return results
        except ConveyorError:
            raise
        except Exception as e:  # as in the worker: a model failure is this request's error, never a 500
            raise InferenceFailed(f"model {self._label!r} failed: {e}") from None
        finally:
            wall = perf_counter() - wall
            with self._lock:
                self._busy -= 1
                metrics = self.metrics
                metrics.queue.observe(0.0)  # never queued
                metrics.run.observe(wall)
                metrics.rows.observe(_rows_of(feeds))

    def _flush(self) -> None:
        """Run the loop's batch on the calling thread (see admit), after the queued requests the worker has
        not taken yet (older, and one call instead of two): merged by key, up to ``max_batch_size`` rows a
        call."""
        jobs: deque[_Job] = deque()
        with self._lock:  # close() queues its stop sentinel under this lock
            self._flush_due = False
            if not self._loop_batch:  # run already, when it filled up
                return
            if not self._closed:  # once closed, the worker runs the queue up to its sentinel
                with contextlib.suppress(Empty):
                    while True:
                        queued = self._queue.get_nowait()
                        if queued is None:  # cannot happen while not closed; never swallow the sentinel
                            self._queue.put(None)
                            break
                        jobs.append(queued)
            jobs.extend(self._loop_batch)
            self._loop_batch = []
            self._loop_rows = 0
            self.stats.loop_batches += 1
        here = asyncio.get_running_loop()
        while jobs:
            batch = self._take(jobs)
            if batch:
                self._run(batch, here=here)

    def _drop(self, job: _Job) -> None:
        with self._lock:
            if job.state == _QUEUED:
                job.state = _DROPPED
                self._waiting -= 1

    def _expire(self, job: _Job) -> None:
        self._drop(job)
        if not job.future.done():
            self.stats.expired += 1
            job.future.set_exception(
                DeadlineExceeded(
                    f"model {self._label!r} did not answer within {self.config.request_timeout_ms} ms"
                )
            )

    async def drain(self) -> None:
        """Return once every queued request has been run and answered."""
        while True:
            with self._lock:
                if self._waiting == 0 and self._busy == 0:
                    return
            await asyncio.sleep(0.005)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new requests, run the queued ones, stop the worker thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)  # under the lock, so _flush never puts a request behind it
        self._thread.join(timeout)
        untrack_batcher(self)
        log.info("batcher for %s stopped: %s", self._label, self.stats)

    # -- the worker thread --

    def _work(self) -> None:
        pending: deque[_Job] = deque()
        stopping = False
        while pending or not stopping:
            if not pending:
                job = self._queue.get()
                if job is None:
                    break
                pending.append(job)
            if self._merging:
                stopping = self._gather(pending) or stopping
            batch = self._take(pending)
            if batch:
                self._run(batch)

    def _gather(self, pending: deque[_Job]) -> bool:
        """Move queued requests into ``pending``; True once the stop sentinel is seen."""
        cap = self.config.max_batch_size
        rows = sum(j.rows for j in pending)
        # First take what is already queued, up to the cap. Then wait (up to max_queue_delay) only while the
        # last batch says more requests are on their way: a lone request under light load runs at once
        # instead of paying the delay for a batch that cannot grow.
        limit, deadline = cap, None
        while rows < limit:
            try:
                if deadline is None:
                    job = self._queue.get_nowait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    job = self._queue.get(timeout=remaining)
            except Empty:
                if deadline is not None or self._delay_s <= 0:
                    break
                limit, deadline = min(cap, self._last_rows), time.monotonic() + self._delay_s
                continue
            if job is None:
                return True
            pending.append(job)
            rows += job.rows
        return False

    def _take(self, pending: deque[_Job]) -> list[_Job]:
        """The next run: the oldest live request plus later ones with its key, up to max_batch_size rows."""
        cap = self.config.max_batch_size
        batch: list[_Job] = []
        keep: list[_Job] = []
        rows = 0
        with self._lock:
            while pending:
                job = pending.popleft()
                if job.state == _DROPPED or job.future.done():
                    if job.state == _QUEUED:
                        job.state = _DROPPED
                        self._waiting -= 1
                    continue
                if not batch:
                    batch.append(job)
                    rows = job.rows
                    if job.key is None:
                        break
                elif job.key == batch[0].key and rows + job.rows <= cap:
                    batch.append(job)
                    rows += job.rows
                else:
                    keep.append(job)
                if rows >= cap:
                    break
            pending.extendleft(reversed(keep))
            for job in batch:
                job.state = _STARTED
            self._waiting -= len(batch)
            self._busy += len(batch)
        return batch

    def _run(self, batch: list[_Job], here: asyncio.AbstractEventLoop | None = None) -> None:
        """Run one batch and hand its results back: the worker does, and a loop making room (admit).

        ``here``: the event loop running on the calling thread, whose requests are answered directly."""
        results: Sequence[Result] | None = None
        runs, merged_rows = 0, 0
        started = perf_counter()
        walls: list[float] = []  # each model call's wall time
        if len(batch) > 1:
            try:
                start = _cpu()
                outputs = self.model.run(merge([j.feeds for j in batch]), batch[0].names)
                self._last_run_s = _cpu() - start
                results = split(outputs, [j.rows for j in batch])
            except Exception:  # rerun alone below, so only the request at fault fails
                results = None
            if results is not None:
                runs, merged_rows = 1, sum(j.rows for j in batch)
                walls.append(perf_counter() - started)
        if results is None:
            alone: list[Result] = []
            for j in batch:
                wall = perf_counter()
                alone.append(self._run_alone(j))
                walls.append(perf_counter() - wall)
            results, runs = alone, len(batch)
        self._last_rows = sum(j.rows for j in batch)
        # Under the lock: two threads may run batches at once (the worker, and a loop in admit). The batch
        # stops counting as busy before its answers go out: handing them to another loop releases the GIL,
        # and that loop may then see the next lone request before this thread runs again (a lone request
        # found the worker "busy" with answers already given). drain() may so return a moment before the
        # hand-over; close() joins this thread, which always finishes it.
        with self._lock:
            self._busy -= len(batch)
            stats = self.stats
            stats.requests += len(batch)
            stats.runs += runs
            if merged_rows:
                stats.batch_rows[merged_rows] += 1
                stats.largest_batch = max(stats.largest_batch, merged_rows)
            elif len(batch) > 1:
                stats.fallbacks += 1
            metrics = self.metrics
            for job in batch:
                metrics.queue.observe(started - job.queued_at)
            for wall in walls:
                metrics.run.observe(wall)
            if merged_rows:
                metrics.rows.observe(merged_rows)
            else:
                for job in batch:
                    metrics.rows.observe(job.rows or _rows_of(job.feeds))
        self._deliver(batch, results, here)

    def _run_alone(self, job: _Job) -> Result:
        try:
            start = _cpu()
            results = self.model.run(job.feeds, job.names)
            self._last_run_s = _cpu() - start
            return results
        except ConveyorError as e:
            return e
        except Exception as e:  # never let one request's failure stop the worker
            return InferenceFailed(f"model {self._label!r} failed: {e}")

    def _deliver(
        self, batch: list[_Job], results: Sequence[Result], here: asyncio.AbstractEventLoop | None
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[_Job], list[Result]]] = {}
        for job, result in zip(batch, results, strict=True):
            jobs, res = by_loop.setdefault(job.loop, ([], []))
            jobs.append(job)
            res.append(result)
        for loop, (jobs, res) in by_loop.items():
            if loop is here:  # this thread's loop: no wake-up to send
                _resolve(jobs, res)
                continue
            # A closed loop (RuntimeError) means nobody is waiting for these any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, jobs, res)
