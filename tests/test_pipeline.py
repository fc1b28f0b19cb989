"""Pipeline mechanics: latest-frame slot, drop-oldest sink queues, stage errors, clean stops."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.config import Config
from edge.errors import SourceError
from edge.pipeline import FrameSlot, Pipeline, SinkWorker, load_model
from edge.stats import Stats
from edge.types import Frame, PoseResult


def _frame(i: int) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), i, time.monotonic_ns(), time.time())


def test_slot_keeps_only_the_newest_frame_and_counts_drops():
    stats, stop = Stats(), threading.Event()
    slot = FrameSlot(stats, stop)
    for i in range(5):
        slot.put(_frame(i), wait_for_reader=False)
    assert slot.get().index == 4
    assert stats.drops["capture"] == 4
    assert slot.get() is None  # empty: returns after the poll interval


def test_slot_back_pressure_loses_nothing():
    stats, stop = Stats(), threading.Event()
    slot = FrameSlot(stats, stop)
    got = []

    def reader():
        while len(got) < 50:
            f = slot.get()
            if f is not None:
                got.append(f.index)
                time.sleep(0.001)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(50):
        slot.put(_frame(i), wait_for_reader=True)
    t.join(5)
    assert got == list(range(50)) and stats.drops["capture"] == 0


class SlowSink:
    name = "slow"

    def __init__(self, delay: float):
        self.delay, self.seen = delay, []

    def open(self, meta):
        pass

    def write(self, result):
        time.sleep(self.delay)
        self.seen.append(result.frame.index)

    def close(self):
        pass


def test_sink_queue_drops_oldest_and_counts():
    stats = Stats()
    sink = SlowSink(0.05)
    worker = SinkWorker(sink, maxlen=3, stats=stats)
    worker.thread.start()
    for i in range(20):
        worker.put(PoseResult(_frame(i), []))
    worker.finish()
    worker.thread.join(5)
    assert sink.seen[-1] == 19  # the newest always arrives
    assert len(sink.seen) + stats.drops["sink:slow"] == 20


class FailingSink(SlowSink):
    name = "failing"

    def write(self, result):
        raise OSError("disk full")


def _cfg(path, clip, **pipeline):
    return Config.model_validate({"model": {"path": str(path)}, "source": {"type": "file", "path": str(clip), "realtime": False},
                                  "outputs": [], "pipeline": pipeline})


def test_slow_and_failing_sinks_never_stall_inference(movenet_tflite, walk_clip):
    cfg = _cfg(movenet_tflite, walk_clip, sink_queue=2)
    slow, failing = SlowSink(0.2), FailingSink(0)
    p = Pipeline(cfg, sinks=[slow, failing])
    t0 = time.monotonic()
    p.run()
    assert p.stats.frames_processed == 89
    assert time.monotonic() - t0 < 0.2 * 89 / 2  # far faster than the slow sink could take every frame
    assert p.stats.drops["sink:failing"] == 89
    assert p.stats.drops["sink:slow"] + len(slow.seen) == 89


def test_max_frames_and_stage_timings(movenet_tflite, walk_clip):
    got = []

    class Collect(SlowSink):
        name = "collect"

        def write(self, result):
            got.append(result)

    p = Pipeline(_cfg(movenet_tflite, walk_clip, max_frames=10), sinks=[Collect(0)])
    p.run()
    assert [r.frame.index for r in got] == list(range(10))
    for r in got:
        assert {"prepare", "infer", "decode"} <= set(r.timings_ms) and all(v > 0 for v in r.timings_ms.values())
        assert r.latency_ms > 0 and len(r.poses) == 1


class BrokenSource:
    name = "broken"
    continuous = True
    live = True
    fps = None

    def __init__(self):
        self.n = 0

    def open(self):
        pass

    def read(self):
        self.n += 1
        if self.n > 3:
            raise SourceError("camera unplugged")
        return np.zeros((48, 64, 3), np.uint8), time.monotonic_ns()

    def close(self):
        pass


def test_source_failure_stops_pipeline_and_is_reported(movenet_tflite, walk_clip):
    p = Pipeline(_cfg(movenet_tflite, walk_clip), source=BrokenSource(), sinks=[])
    with pytest.raises(SourceError, match="unplugged"):
        p.run()
    assert p.stats.source_state == "failed"


def test_stop_returns_quickly_on_a_live_source(movenet_tflite, walk_clip):
    cfg = Config.model_validate({"model": {"path": str(movenet_tflite)},
                                 "source": {"type": "file", "path": str(walk_clip), "loop": True}, "outputs": []})
    p = Pipeline(cfg, model=load_model(cfg)).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 1.0
    assert not any(t.is_alive() for t in threading.enumerate() if t.name in ("capture", "inference"))
    assert p.stats.frames_processed > 0


class BlankSource(BrokenSource):
    """Empty frames (a room with nobody in it), endlessly."""

    name = "blank"

    def read(self):
        return np.zeros((240, 320, 3), np.uint8), time.monotonic_ns()


def test_warns_once_when_first_frames_score_nobody(movenet_tflite, walk_clip, caplog):
    cfg = _cfg(movenet_tflite, walk_clip, max_frames=120)
    p = Pipeline(cfg, source=BlankSource(), sinks=[])
    with caplog.at_level("WARNING", logger="edge.pipeline"):
        p.run()
    warnings = [r for r in caplog.records if "no person scored above 0.05" in r.message]
    assert len(warnings) == 1 and "models check" in warnings[0].message


def test_no_warning_when_people_are_found(movenet_tflite, walk_clip, caplog):
    p = Pipeline(_cfg(movenet_tflite, walk_clip), sinks=[])
    with caplog.at_level("WARNING", logger="edge.pipeline"):
        p.run()
    assert p.stats.frames_processed == 89
    assert not [r for r in caplog.records if "no person scored" in r.message]


def test_a_display_sink_gets_its_own_one_frame_queue(movenet_tflite, walk_clip):
    class Screen(SlowSink):
        name = "screen"
        queue_length = 1

    screen, other = Screen(0.05), SlowSink(0)
    p = Pipeline(_cfg(movenet_tflite, walk_clip, sink_queue=8), sinks=[screen, other])
    assert [w._maxlen for w in p._workers] == [1, 8]
    p.run()
    assert screen.seen[-1] == 88  # the newest frame always reaches the screen
    assert p.stats.drops["sink:screen"] + len(screen.seen) == 89


def test_pipeline_tunes_the_interpreter_while_running_and_restores_it(movenet_tflite, walk_clip):
    """A short GIL switch interval and single-threaded OpenCV while running (issue 2's FPS ratio), undone by stop."""
    import sys

    import cv2

    from edge.pipeline import GIL_SWITCH_S

    sys.setswitchinterval(0.005)  # CPython's and OpenCV's defaults, so that a missing restore shows
    cv2.setNumThreads(2)
    before_switch, before_cv = sys.getswitchinterval(), cv2.getNumThreads()
    seen = []

    class Probe(SlowSink):
        name = "probe"

        def write(self, result):
            seen.append((sys.getswitchinterval(), cv2.getNumThreads()))

    p = Pipeline(_cfg(movenet_tflite, walk_clip, max_frames=5), sinks=[Probe(0)])
    p.run()
    assert seen and all(s == (GIL_SWITCH_S, 1) for s in seen)
    assert (sys.getswitchinterval(), cv2.getNumThreads()) == (before_switch, before_cv)


def test_a_file_read_fast_is_analysed_in_its_filmed_time(movenet_tflite, walk_clip):
    """Dwell times, rep durations and the One Euro filter need filmed seconds, not how fast the file was read.

    The walking clip is 89 frames at 30 fps (2.93 s). Angle updates are throttled to one a second, so its
    filmed time gives three; read at a few hundred frames a second, read time would give one."""
    got = []

    class Collect(SlowSink):
        name = "collect"

        def write(self, result):
            got.append(result)

    cfg = Config.model_validate({
        "model": {"path": str(movenet_tflite)}, "source": {"type": "file", "path": str(walk_clip), "realtime": False},
        "outputs": [], "analytics": [{"type": "angles", "joints": ["left_elbow"], "interval_s": 1.0}]})
    Pipeline(cfg, sinks=[Collect(0)]).run()
    assert [r.frame.t_media_ns for r in got[:3]] == [0, 33_000_000, 67_000_000]  # the file's own timestamps
    updates = [e for r in got for e in r.events if e.type == "angle_update"]
    assert len(updates) == 3
    gaps = np.diff([e.t_capture_ns for e in updates]) / 1e9
    assert all(1.0 <= g < 1.0 + 1.5 / 30 for g in gaps)  # a second of film, to the next frame


def test_overlapping_pipelines_share_the_interpreter_settings(movenet_tflite, walk_clip):
    """The first running pipeline tunes the process, the last one to stop restores it (e.g. two in one app)."""
    import sys

    import cv2

    from edge.pipeline import GIL_SWITCH_S

    sys.setswitchinterval(0.005)
    cv2.setNumThreads(2)
    cfg = Config.model_validate({"model": {"path": str(movenet_tflite)}, "outputs": [],
                                 "source": {"type": "file", "path": str(walk_clip), "realtime": True, "loop": True}})
    a, b = Pipeline(cfg), Pipeline(cfg)
    a.start()
    b.start()
    try:
        a.stop()
        assert (sys.getswitchinterval(), cv2.getNumThreads()) == (GIL_SWITCH_S, 1)  # b still runs
    finally:
        b.stop()
    assert (sys.getswitchinterval(), cv2.getNumThreads()) == (0.005, 2)
