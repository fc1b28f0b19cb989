"""The only module that knows about threads: wires source -> model -> sinks and owns their lifecycle.

Capture thread (read, prepare) -> latest-frame slot -> inference thread(s) (run) -> in-order hand-off ->
post thread (decode, track, smooth, analytics) -> one bounded queue + thread per sink. A model
thread does nothing but run the model: everything else overlaps with it on the other cores. With
``model.workers`` > 1 each inference thread has its own copy of the model and takes the next frame
when it is free; the hand-off puts results back in frame order (edge/handoff.py, edge/workers.py).
A live source (camera, paced file) overwrites an unread frame and counts the drop; a file
played as fast as possible waits for the slot instead, so nothing is dropped. One Event stops
everything; every blocking call has a timeout. A frame that cannot be used is counted and the run
goes on (edge/intake.py); the model's raw output is watched for NaN, constants and noise
(edge/output_health.py).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque

import cv2

from edge import __version__
from edge.analytics import build_analytics
from edge.capture.base import EndOfStream, Source, auto_type, build_source
from edge.config import Config
from edge.errors import EdgeposeError, FrameError
from edge.handoff import POLL_S, FrameSlot, InOrder  # noqa: F401  (FrameSlot re-exported)
from edge.idle import IdleGate, gating_on
from edge.intake import Intake, Prepared
from edge.model import Model, load_model, run_prepared  # noqa: F401  (re-exported: callers load models through here)
from edge.output_health import OutputMonitor
from edge.outputs.base import Sink, build_sink
from edge.post.geometry import clip_to_frame
from edge.post.tracking import build_post
from edge.stats import Stats
from edge.types import PoseResult, StreamMeta
from edge.workers import placement

log = logging.getLogger(__name__)
# How long a thread running Python may keep the GIL from one that wants it (CPython's default is 5 ms).
# When the model returns, its thread must get the GIL back from the capture or post thread; at 5 ms
# that wait could cost the model more than a whole MoveNet frame (docs/BENCHMARKS.md, issue 2).
GIL_SWITCH_S = 0.0005
IDLE_HEARTBEAT_S = 1.0  # while idle, a skipped frame goes to the outputs this often ("idle", the live picture)


class _RuntimeTuning:
    """Process-wide settings for busy pipeline threads: the first running pipeline sets them, the last restores them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[float, int] | None = None  # switch interval, OpenCV threads before the first pipeline

    def acquire(self, opencv_threads: int) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = (sys.getswitchinterval(), cv2.getNumThreads())
                sys.setswitchinterval(min(GIL_SWITCH_S, self._saved[0]))
            if opencv_threads:  # 0 = leave OpenCV's own choice
                cv2.setNumThreads(opencv_threads)
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved is not None:
                sys.setswitchinterval(self._saved[0])
                cv2.setNumThreads(self._saved[1])
                self._saved = None


_TUNING = _RuntimeTuning()


class SinkWorker:
    """One sink on its own thread behind a bounded queue that drops the oldest item."""

    def __init__(self, sink: Sink, maxlen: int, stats: Stats):
        self.sink = sink
        self._queue: deque[PoseResult] = deque()
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._stats = stats
        self._done = False
        self._failing = False
        self.thread = threading.Thread(target=self._loop, name=f"sink-{sink.name}", daemon=True)

    def put(self, result: PoseResult) -> None:
        with self._cond:
            if len(self._queue) >= self._maxlen:
                self._queue.popleft()
                self._stats.drop(f"sink:{self.sink.name}")
            self._queue.append(result)
            self._cond.notify()

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._done:
                    self._cond.wait(POLL_S)
                if not self._queue and self._done:
                    return
                item = self._queue.popleft()
            try:
                self.sink.write(item)
                if self._failing:
                    log.info("output %s works again", self.sink.name)
                    self._failing = False
            except Exception as exc:  # a broken sink must never stop inference; count and report once
                self._stats.drop(f"sink:{self.sink.name}")
                if not self._failing:
                    log.error("output %s failed: %s (results are dropped and counted until it recovers)", self.sink.name, exc)
                    self._failing = True


class Pipeline:
    """Build with a Config; ``start()``, then ``wait()`` until the source ends or ``stop()``."""

    def __init__(self, cfg: Config, model: Model | None = None, source: Source | None = None,
                 sinks: list[Sink] | None = None):
        self.cfg = cfg
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.source = source or build_source(cfg.source)
        m = cfg.model
        self.placement = placement(m.workers, model.backend_options.threads if model and model.backend_options
                                   else m.threads, self.source.live)
        self.model = model or load_model(cfg, threads=self.placement.threads)
        self._backends = [self.model.backend]  # one per model worker; the copies are this pipeline's to close
        self.post = build_post(cfg)  # tracker -> smoother: update(poses, t_ns) -> poses
        self.analytics = build_analytics(cfg)  # angles, reps, zones: analytics(poses, frame) -> events
        self.sinks = sinks if sinks is not None else [build_sink(o) for o in cfg.outputs]
        self._slot = FrameSlot(self.stats, self.stop_event)  # capture -> inference: newest frame wins
        self._handoff = InOrder(self.placement.workers, self.stop_event)  # inference -> post: lossless, in order
        # a sink may ask for its own queue length: a display wants only the newest frame (1)
        self._workers = [SinkWorker(s, getattr(s, "queue_length", None) or cfg.pipeline.sink_queue, self.stats)
                         for s in self.sinks]
        self._threads: list[threading.Thread] = []
        self._intake = Intake(self.model.family, self.stats, self.source.continuous)  # a bad frame is counted
        self.health = OutputMonitor(self.stats, self.model.path)  # NaN, constant or noise output: warned, counted
        kind = cfg.source.type if cfg.source.type != "auto" else auto_type(cfg.source)
        gated = gating_on(cfg.idle, kind, self.source.live)
        if gated and not self.source.continuous:
            log.warning("idle gating is off for unrelated stills (%s): every image is posed", self.source.name)
            gated = False
        self.gate = IdleGate(cfg.idle) if gated else None  # idle: skip frames while nobody is there
        self._opened: list[Sink] = []
        self._tuned = False  # holds a share of the process-wide settings (_TUNING) while running
        self.meta = StreamMeta(
            model=self.model.path.name, family=self.model.family.name, runtime=self.model.backend.runtime,
            keypoint_names=self.model.family.keypoint_names, edges=self.model.family.edges,
            source=self.source.name, version=__version__, stats=self.stats,
        )
        try:
            for _ in range(self.placement.workers - 1):
                self._backends.append(self.model.copy_backend())
        except BaseException:
            self._close_copies()
            if model is None:  # loaded here: nobody else will close it
                self.model.close()
            raise
        if self.placement.workers > 1:
            log.info("model workers: %s", self.placement)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        if hasattr(self.source, "model_input_size"):  # picamera: its lores stream at the model's input size
            self.source.model_input_size = getattr(self.model.family, "size", None)
        try:
            self.source.open()
            for sink in self.sinks:
                if hasattr(sink, "analytics"):  # e.g. MQTT announces a rep-count sensor per exercise
                    sink.analytics = self.analytics.describe()
                sink.open(self.meta)
                self._opened.append(sink)
        except BaseException:
            self._close_all()
            self._close_copies()
            raise
        self.stats.source_state = "streaming"
        _TUNING.acquire(self.cfg.pipeline.opencv_threads)
        self._tuned = True
        several = len(self._backends) > 1
        self._threads = [
            threading.Thread(target=self._guard, args=(self._capture_loop,), name="capture", daemon=True),
            *(threading.Thread(target=self._guard, args=(self._inference_loop, b),
                               name=f"inference-{i}" if several else "inference", daemon=True)
              for i, b in enumerate(self._backends)),
            threading.Thread(target=self._guard, args=(self._post_loop,), name="post", daemon=True),
        ]
        outputs = ", ".join(s.name for s in self.sinks) or "no outputs"
        log.info("pipeline running: %s -> %s", self.source.name, outputs)  # before any thread can end the source
        for w in self._workers:
            w.thread.start()
        for t in self._threads:
            t.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once the pipeline has finished (end of source, max_frames, error or stop)."""
        return self.finished.wait(timeout)

    def stop(self) -> None:
        """Stop every thread and close every stage; returns within about stop_timeout_s."""
        self.stop_event.set()
        deadline = time.monotonic() + self.cfg.pipeline.stop_timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for w in self._workers:
            w.finish()
        for w in self._workers:
            if w.thread.is_alive():
                w.thread.join(max(0.05, deadline - time.monotonic()))
        self._close_all()
        self._close_copies()
        if self._tuned:
            _TUNING.release()
            self._tuned = False
        self.health.finish()
        self.finished.set()

    def run(self) -> None:
        """start(), wait for the end, stop(); re-raise a stage's error in the caller's thread."""
        self.start()
        try:
            while not self.wait(0.2):
                pass
        finally:
            self.stop()
        if self.error is not None:
            raise self.error

    def _close_all(self) -> None:
        for sink in self._opened:
            try:
                sink.close()
            except Exception as exc:  # closing must not hide the original error
                log.warning("closing output %s failed: %s", sink.name, exc)
        self._opened = []
        try:
            self.source.close()
        except Exception as exc:
            log.warning("closing source %s failed: %s", self.source.name, exc)

    def _close_copies(self) -> None:
        """Close the model copies this pipeline opened (the first backend belongs to the Model, which may be reused)."""
        for backend in self._backends[1:]:
            try:
                backend.close()
            except Exception as exc:
                log.warning("closing a model worker failed: %s", exc)
        del self._backends[1:]

    # -- threads ---------------------------------------------------------------------------
    def _guard(self, loop, *args) -> None:
        try:
            loop(*args)
        except EdgeposeError as exc:
            self.error = exc
        except Exception as exc:  # an unexpected bug: keep the traceback in the log
            log.exception("%s thread crashed", threading.current_thread().name)
            self.error = exc
        finally:
            if self.error is not None:
                self.stats.source_state = "failed" if threading.current_thread().name == "capture" else self.stats.source_state
                self.stop_event.set()
                self.finished.set()

    def _capture_loop(self) -> None:
        index, last_heartbeat = 0, 0.0
        wait_for_reader = not getattr(self.source, "live", True)
        while not self.stop_event.is_set():
            if wait_for_reader:  # read only once the slot is free: a frame decoded early would wait (latency)
                self._slot.wait_empty()
            try:
                got = self.source.read()
            except EndOfStream:
                self.stats.source_state = "ended"
                log.info("source %s ended after %d frame%s", self.source.name, index, "" if index == 1 else "s")
                break
            except FrameError as exc:  # the source read something that is no image (a corrupt file): skip it
                self._intake.bad.count("unreadable", exc)
                continue
            state = getattr(self.source, "state", None)  # live sources: streaming / reconnecting
            if state:
                self.stats.source_state = state
                self.stats.reconnects = getattr(self.source, "reconnects", 0)
            if got is None:
                continue
            image, t_ns = got
            self.stats.captured()
            still = getattr(self.source, "current", None)  # the image file a still came from
            frame = self._intake.frame(image, index, t_ns, time.time(),  # None: a bad frame, counted
                                       model_image=getattr(self.source, "model_image", None),  # picamera's lores
                                       t_media_ns=getattr(self.source, "media_time_ns", None),  # a file's own time
                                       source_file=str(still) if still else None)
            index += 1
            if frame is None:
                continue
            if self.gate is not None and not self._gate_admits(frame):
                if time.monotonic() - last_heartbeat >= IDLE_HEARTBEAT_S:  # no model, in order, to the outputs
                    last_heartbeat = time.monotonic()
                    self._slot.put(Prepared(frame, None, None, {}), wait_for_reader)
                continue
            item = self._intake.prepared(frame)
            if item is not None:
                self._slot.put(item, wait_for_reader)
        self._slot.close()

    def _gate_admits(self, frame) -> bool:
        """Idle gating: should the model run on this frame? A skipped one is counted as idle, never as a drop."""
        admitted = self.gate.admit(frame.image, frame.t_stream_ns)
        self.stats.activity = self.gate.state
        if not admitted:
            self.stats.idle_frame(time.monotonic_ns())
        return admitted

    def _inference_loop(self, backend) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    item = self._slot.get()
                except EndOfStream:
                    break
                if item is None:
                    continue
                if item.inputs is not None:  # None: a frame skipped while idle, on its way to the outputs
                    t0 = time.perf_counter_ns()
                    item.outputs = run_prepared(backend, item.inputs)
                    item.timings["infer"] = (time.perf_counter_ns() - t0) / 1e6
                self._handoff.put(item.ticket, item)
        finally:
            self._handoff.close()

    def _post_loop(self) -> None:
        family, stats = self.model.family, self.stats
        max_frames = self.cfg.pipeline.max_frames
        reset_each_frame = not self.source.continuous  # unrelated stills: no tracks across them
        while not self.stop_event.is_set():
            try:
                item = self._handoff.get()
            except EndOfStream:
                break
            if item is None:
                continue
            frame, timings = item.frame, item.timings
            if item.inputs is None:  # skipped while idle: the outputs learn it, nothing else does
                idle = PoseResult(frame, [], {}, time.monotonic_ns(), [], None, idle=True)
                for w in self._workers:
                    w.put(idle)
                continue
            if reset_each_frame:
                self.post.reset()
                self.analytics.reset()
            t0 = time.monotonic_ns()
            self.health.observe_prepared(item.inputs, item.outputs, frame.index)  # NaN, constant, noise: warned once
            poses = clip_to_frame(family.decode(item.outputs, item.transform), frame.width, frame.height)
            t_post = time.monotonic_ns()
            timings["decode"] = (t_post - t0) / 1e6
            if self.gate is not None:
                self.gate.saw(len(poses), frame.t_stream_ns)  # people before tracking: a held track is nobody
            poses = self.post(poses, frame.t_stream_ns)  # a file's filmed time, not how fast we read it
            t_done = time.monotonic_ns()
            timings["post"] = (t_done - t_post) / 1e6
            events, view = [], None
            if self.analytics:
                events, view = self.analytics(poses, frame), self.analytics.view()
                t_analytics, t_done = t_done, time.monotonic_ns()
                timings["analytics"] = (t_done - t_analytics) / 1e6
            idle = self.gate is not None and self.gate.state == "idle"  # a look while idle that found nobody
            result = PoseResult(frame, poses, timings, t_done, events, view, idle=idle)
            stats.processed(timings, result.latency_ms, len(poses), t_done)
            if frame.source_file:
                stats.still(os.path.basename(frame.source_file), [round(p.score, 2) for p in poses])
            self.health.people(poses)
            for w in self._workers:
                w.put(result)
            if max_frames and stats.frames_processed >= max_frames:
                break
        self.finished.set()
