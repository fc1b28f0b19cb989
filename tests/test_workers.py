"""model.workers: several copies of the model take frames in turn, and everything after them sees frame order."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from edge.capture.base import EndOfStream
from edge.cli import main
from edge.config import ConfigError, validate
from edge.handoff import InOrder
from edge.outputs.base import build_sink
from edge.pipeline import Pipeline
from edge.workers import Placement, auto_placement, combinations, placement

KP_THR = 0.3
TAPE = [[0.05, 0.55], [0.6, 0.55], [0.6, 0.95], [0.05, 0.95]]


class Recorder:
    name = "recorder"

    def __init__(self):
        self.results = []

    def open(self, meta):
        self.meta = meta

    def write(self, result):
        self.results.append(result)

    def close(self):
        pass


def clip_config(tmp_path, model, clip, workers, threads=1, **source):
    return validate({
        "source": {"type": "file", "path": str(clip), "realtime": False, **source},
        "model": {"path": str(model), "workers": workers, "threads": threads},
        "pipeline": {"sink_queue": 10000},
        "analytics": [
            {"type": "zones", "name": "floor", "anchor": "ankles", "keypoint_threshold": KP_THR,
             "zones": [{"name": "tape", "polygon": TAPE}]},
            {"type": "angles", "joints": ["left_knee", "right_knee"], "interval_s": 0.2, "keypoint_threshold": KP_THR},
            {"type": "reps", "exercise": "squat"},
            {"type": "reps", "exercise": "jumping_jack"},
        ],
        "outputs": [{"type": "jsonl", "path": str(tmp_path / f"poses-{workers}.jsonl")}],
    })


def run_clip(tmp_path, model, clip, workers, **source):
    cfg = clip_config(tmp_path, model, clip, workers, **source)
    recorder = Recorder()
    pipeline = Pipeline(cfg, sinks=[build_sink(cfg.outputs[0]), recorder])
    pipeline.run()
    lines = [json.loads(x) for x in (tmp_path / f"poses-{workers}.jsonl").read_text().splitlines()]
    return pipeline, recorder.results, lines


def same_meaning(line: dict) -> dict:
    """A JSON line without what depends on the clock (latency, timings, when it was read)."""
    clock = ("t_capture_ns", "t_wall_ms", "latency_ms", "timings_ms")
    out = {k: v for k, v in line.items() if k not in clock}
    out["events"] = [{k: v for k, v in e.items() if k != "t_wall_ms"} for e in line.get("events", [])]
    return out


@pytest.fixture(scope="module")
def worker_gif(data_dir):
    """71 frames: a worker walks over the tape zone (zone events, tracks, knee angles)."""
    p = data_dir / "video" / "intel_worker-zone-detection.gif"
    assert p.is_file(), p
    return p


# -- the in-order hand-off -------------------------------------------------------------------
def test_in_order_hands_results_on_by_ticket_whatever_order_the_workers_finish_in():
    stop = threading.Event()
    gate = InOrder(workers=3, stop=stop)
    tickets = iter(range(300))
    lock = threading.Lock()

    def worker():
        rnd = random.Random(threading.get_ident())
        while True:
            with lock:
                t = next(tickets, None)
            if t is None:
                break
            time.sleep(rnd.random() * 0.002)  # finish out of order
            gate.put(t, t)
        gate.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    got = []
    with pytest.raises(EndOfStream):
        while True:
            item = gate.get()
            if item is not None:
                got.append(item)
    for t in threads:
        t.join(5)
    assert got == list(range(300))


def test_in_order_holds_a_worker_that_is_a_window_ahead_until_the_due_ticket_is_out():
    stop = threading.Event()
    gate = InOrder(workers=2, stop=stop)
    gate.put(1, "one")  # 1 ahead of ticket 0: fits the window of 2
    ahead = threading.Thread(target=gate.put, args=(2, "two"))
    ahead.start()
    ahead.join(0.3)
    assert ahead.is_alive(), "a worker two tickets ahead must wait, or results would pile up without bound"
    gate.put(0, "zero")  # the due ticket never waits
    assert [gate.get(), gate.get()] == ["zero", "one"]
    ahead.join(2)
    assert not ahead.is_alive() and gate.get() == "two"


# -- the rule for auto -----------------------------------------------------------------------
def test_auto_gives_a_file_one_single_threaded_copy_per_core_and_a_camera_its_threads():
    assert auto_placement(threads=2, live=False, cores=2) == Placement(2, 1)
    assert auto_placement(threads=2, live=False, cores=4) == Placement(4, 1)
    assert auto_placement(threads=2, live=True, cores=2) == Placement(1, 2)  # no slower frame for a camera
    assert auto_placement(threads=2, live=True, cores=4) == Placement(2, 2)
    assert auto_placement(threads=1, live=False, cores=64).workers == 4  # capped: each copy costs memory
    assert placement(3, 2, live=True, cores=2) == Placement(3, 2)  # a number is taken as it is


def test_tune_measures_every_combination_that_fits_the_cores():
    assert combinations(2) == [Placement(1, 1), Placement(1, 2), Placement(2, 1)]
    four = combinations(4)
    assert all(p.workers * p.threads <= 4 for p in four) and len(four) == 8
    assert max(p.workers for p in combinations(24)) == 16  # model.workers' bound: --tune never tries 17


def test_a_bad_workers_value_is_a_config_error_that_says_what_is_allowed():
    for bad in (0, 17, "many", -1, "²"):
        with pytest.raises(ConfigError) as e:
            validate({"model": {"workers": bad}})
        assert "model.workers" in str(e.value)
    assert validate({"model": {"workers": "auto"}}).model.workers == "auto"


def test_run_takes_workers_on_the_command_line(capsys, data_dir):
    assert main(["run", "--source", str(data_dir / "images" / "bus.jpg"), "--workers", "0", "-q"]) == 2
    err = capsys.readouterr().err
    assert "model.workers" in err and "Traceback" not in err


# -- the pipeline ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory, yolo_tflite, worker_gif):
    runs = {}
    for workers in (1, 2):
        tmp = tmp_path_factory.mktemp(f"workers{workers}")
        runs[workers] = run_clip(tmp, yolo_tflite, worker_gif, workers)
    return runs


def test_two_workers_run_two_models_and_keep_frame_order_at_every_sink(worker_runs):
    pipeline, results, lines = worker_runs[2]
    assert pipeline.placement == Placement(2, 1) and len(pipeline._backends) == 1  # the copy is closed after the run
    indices = [r.frame.index for r in results]
    assert len(indices) == 71 and all(b > a for a, b in zip(indices, indices[1:]))
    assert [x["frame"] for x in lines] == indices
    assert pipeline.stats.snapshot()["dropped_total"] == 0


def test_ids_events_angles_and_rep_counts_are_identical_with_one_and_two_workers(worker_runs):
    one, two = worker_runs[1][2], worker_runs[2][2]
    assert [same_meaning(x) for x in one] == [same_meaning(x) for x in two]
    ids = {p.get("id") for x in one for p in x["people"]} - {None}
    events = [e for x in one for e in x.get("events", [])]
    assert ids and events, "the clip must exercise tracking and analytics for the comparison to mean something"
    # rep counters (count and phase per track, every frame) and the zones' dwell times; no clip here holds a
    # completed rep, so the counters' phases are what is compared
    views = {w: [r.analytics for r in worker_runs[w][1]] for w in (1, 2)}
    assert views[1] == views[2]
    phases = [(r["track_id"], r["phase"]) for v in views[1] for r in v["reps"] if r["phase"]]
    assert phases, "the rep counters must see the tracked person for the comparison to mean something"


def test_workers_auto_on_a_file_opens_one_copy_per_core(tmp_path, yolo_tflite, worker_gif):
    cfg = clip_config(tmp_path, yolo_tflite, worker_gif, "auto", threads=2)
    pipeline = Pipeline(cfg, sinks=[])
    try:
        cores = len(__import__("os").sched_getaffinity(0))
        assert pipeline.placement == auto_placement(2, live=False, cores=cores)
        assert len(pipeline._backends) == pipeline.placement.workers
        assert all(b.threads == 1 for b in pipeline._backends) if hasattr(pipeline._backends[0], "threads") else True
    finally:
        pipeline._close_copies()


def test_idle_model_workers_wait_without_waking_each_other():
    """Two workers polling an empty slot sleep POLL_S between polls; a notify on every empty poll made them
    wake each other in a loop (a paced camera with 2 workers then cost 3.6x the CPU of one)."""
    from edge.handoff import POLL_S, FrameSlot
    from edge.stats import Stats

    stop = threading.Event()
    slot = FrameSlot(Stats(), stop)
    polls = [0, 0]

    def worker(i):
        while not stop.is_set():
            slot.get()
            polls[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(2)
    assert sum(polls) <= 4 * 0.5 / POLL_S, polls  # about 10 polls each; the spin made tens of thousands
