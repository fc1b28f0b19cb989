"""HTTP live view with the real pipeline (MoveNet on intel_walk, looped), checked by real clients:
headless Chromium for the page, OpenCV for the MJPEG, a strict Prometheus text parser for /metrics."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import need
from edge.capture.base import to_rgb8
from edge.config import validate
from edge.outputs.base import build_sink
from edge.pipeline import Pipeline

from web_live import DEADLINE_S, get, mjpeg_frames, parse_prometheus, wait_for


# -- the page in a real browser ----------------------------------------------------------------
class Chromium:
    """Headless Chromium driven over the DevTools protocol (websocket-client)."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]

    def __init__(self, profile: Path):
        import websocket

        self.proc = subprocess.Popen(
            ["chromium", *self.FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=900,600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        port = wait_for(lambda: port_file.is_file() and port_file.read_text().split("\n")[0], "Chromium to start")
        pages = wait_for(lambda: [t for t in self._targets(port) if t["type"] == "page"], "a Chromium page")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=DEADLINE_S,
                                              suppress_origin=True)
        self.next_id = 0

    @staticmethod
    def _targets(port: str) -> list[dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expr: str, await_promise: bool = False):
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def chromium(tmp_path):
    need(shutil.which("chromium") is not None, "headless Chromium: apt-get install chromium")
    try:
        import websocket  # noqa: F401
    except ImportError:
        need(False, "the DevTools client: pip install websocket-client (in edgepose[dev])")
    browser = Chromium(tmp_path / "profile")
    yield browser
    browser.close()


MAGENTA = np.array([255, 0, 255])  # the page's joint colour


def test_page_draws_the_skeleton_where_the_model_put_the_keypoints(live, chromium, tmp_path):
    pipe, web, recorder = live
    W, H = 900, 600
    chromium.call("Emulation.setDeviceMetricsOverride", width=W, height=H, deviceScaleFactor=1, mobile=False)
    chromium.call("Page.navigate", url=web.url)
    wait_for(lambda: chromium.js("!!(window.edgepose && edgepose.drawn && edgepose.drawn.people.length"
                                 " && document.getElementById('video').naturalWidth)"),
             "the page to show video and a skeleton")
    drawn = json.loads(chromium.js(
        "(async () => { edgepose.paused = true;"
        " await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));"
        " return JSON.stringify(edgepose.drawn); })()", await_promise=True))
    png = base64.b64decode(chromium.call("Page.captureScreenshot", format="png")["data"])
    shot = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    (tmp_path / "live_view.png").write_bytes(png)  # to look at when this fails
    assert shot.shape == (H, W, 3)
    hud = chromium.js("document.getElementById('hud').textContent")
    assert re.fullmatch(r"\s*\d+\.\d fps · \d+ (person|people)\s*", hud), hud

    # The page drew the model's own keypoints for that frame...
    result = recorder.get(drawn["frame"])
    assert result is not None and result.poses, drawn["frame"]
    kp = result.poses[0].keypoints
    # ...at the place the test works out itself: the 640x480 video fitted into 900x600, centred.
    scale = min(W / 640, H / 480)
    ox, oy = (W - 640 * scale) / 2, (H - 480 * scale) / 2
    assert (round(scale, 3), ox, oy) == (1.25, 50.0, 0.0)
    checked = 0
    for (x, y, s), (px, py, _) in zip(kp, drawn["people"][0]["keypoints"]):
        if s < 0.2:
            continue
        sx, sy = ox + x * scale, oy + y * scale
        assert abs(px - sx) < 0.05 and abs(py - sy) < 0.05  # the page's mapping matches
        if 0 <= sx < W and 0 <= sy < H:
            color = shot[int(round(sy)), int(round(sx))].astype(int)
            assert np.abs(color - MAGENTA).max() <= 12, (x, y, s, tuple(color))
            checked += 1
    assert checked >= 5, f"only {checked} confident joints on screen"
    # The letterbox bars are the page's black; the video fills the middle and shows the clip.
    assert shot[100:, :45].max() == 0 and shot[:, W - 45:].max() == 0  # (the HUD sits top-left)
    video = cv2.resize(shot[:, 50:850], (160, 120), interpolation=cv2.INTER_AREA).astype(int)
    with recorder.lock:
        frames = [r.frame.image for r in list(recorder.results.values())[-90:]]
    best = min(np.abs(cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) - video).mean() for f in frames)
    assert best < 20, f"the video area does not look like any recent frame (mean difference {best:.1f})"


# -- MJPEG, events, metrics, health --------------------------------------------------------------
@pytest.mark.parametrize("query", ["", "?overlay=0"])
def test_mjpeg_decodes_into_frames_of_the_right_size(live, query):
    _, web, _ = live
    parts = mjpeg_frames(web.url + "stream.mjpg" + query, 3)
    for length, jpeg in parts:
        assert length == len(jpeg)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (480, 640, 3)


def test_mjpeg_overlay_draws_skeleton_that_the_bare_stream_has_not(live):
    _, web, _ = live
    annotated = cv2.imdecode(np.frombuffer(mjpeg_frames(web.url + "stream.mjpg", 1)[0][1], np.uint8), 1)
    bare = cv2.imdecode(np.frombuffer(mjpeg_frames(web.url + "stream.mjpg?overlay=0", 1)[0][1], np.uint8), 1)
    # The badge sits top-left on a dark box in the annotated stream only.
    assert annotated[5:25, 5:60].mean() < bare[5:25, 5:60].mean() - 30


def test_events_carry_the_model_keypoints(live):
    _, web, recorder = live
    with urllib.request.urlopen(web.url + "events", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events, current = [], {}
        while len(events) < 4:
            line = r.readline().decode().rstrip("\n")
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                current[k] = v
    assert events[0]["event"] == "meta"
    meta = json.loads(events[0]["data"])
    assert meta["keypoint_names"][5] == "left_shoulder" and [5, 6] in meta["skeleton"] and meta["min_score"] == 0.2
    frames = [json.loads(e["data"]) for e in events[1:]]
    assert [int(e["id"]) for e in events[1:]] == sorted(int(e["id"]) for e in events[1:])
    for f in frames:
        assert (f["width"], f["height"]) == (640, 480) and f["fps"] is not None
        got = recorder.get(f["frame"])
        assert got is not None
        want = np.round(got.poses[0].keypoints.astype(np.float64), 2)
        assert np.allclose(np.array(f["people"][0]["keypoints"]), want)




def test_metrics_parse_as_prometheus_text(live):
    pipe, web, _ = live
    status, body, headers = get(web.url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fam = parse_prometheus(body.decode())
    assert fam["edgepose_fps"]["samples"][""] > 0
    assert fam["edgepose_frames_processed_total"]["samples"][""] >= 3
    stages = {k.split('"')[1] for k in fam["edgepose_stage_seconds"]["samples"]}
    assert {"prepare", "infer", "decode"} <= stages
    assert all(0 < v < 10 for v in fam["edgepose_stage_seconds"]["samples"].values())
    assert fam["edgepose_people"]["samples"][""] in (0, 1)  # single-pose MoveNet
    assert fam["edgepose_uptime_seconds"]["samples"][""] > 0
    info = next(iter(fam["edgepose_info"]["samples"]))
    assert 'family="movenet"' in info and 'model="movenet_singlepose_lightning_int8_4.tflite"' in info
    assert fam["edgepose_source_state"]["samples"]['state="streaming"'] == 1
    assert math.isfinite(fam["edgepose_seconds_since_last_frame"]["samples"][""])


def test_metrics_parser_rejects_broken_text():
    for bad in ["edgepose_x 1\n", "# TYPE a gauge\na{b=\"c} 1\n", "# TYPE a gauge\na 1\na 2\n",
                "# TYPE a_total counter\na_total -1\n", "# TYPE a gauge\na 1"]:
        with pytest.raises(AssertionError):
            parse_prometheus(bad)


def test_healthz_ok_while_frames_flow(live):
    _, web, _ = live
    status, body, _ = get(web.url + "healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


class StallingSource:
    """A camera that delivers a few real frames, then nothing (a hung USB camera, an unplugged cable)."""

    name = "stalling"
    continuous = True
    fps = 30.0
    live = True

    def __init__(self, clip: Path, frames: int):
        self.clip, self.n = clip, frames
        self.frames: list[np.ndarray] = []

    def open(self):
        cap = cv2.VideoCapture(str(self.clip))
        while len(self.frames) < self.n:
            ok, img = cap.read()
            assert ok
            self.frames.append(to_rgb8(img))
        cap.release()

    def read(self):
        if self.frames:
            time.sleep(1 / self.fps)
            return self.frames.pop(0), time.monotonic_ns()
        time.sleep(0.05)
        return None

    def close(self):
        pass


def test_healthz_turns_503_when_the_source_stalls(movenet_tflite, walk_clip):
    cfg = validate({"model": {"path": str(movenet_tflite)},
                    "outputs": [{"type": "web", "port": 0, "stale_after_s": 0.5}]})
    web = build_sink(cfg.outputs[0])
    source = StallingSource(walk_clip, 20)
    pipe = Pipeline(cfg, source=source, sinks=[web])
    try:
        pipe.start()
        wait_for(lambda: get(web.url + "healthz")[0] == 200, "/healthz to report frames flowing")
        wait_for(lambda: get(web.url + "healthz")[0] == 503, "/healthz to report the stall")
        status, body, _ = get(web.url + "healthz")
        assert status == 503 and json.loads(body)["status"] == "stalled"
        assert pipe.stats.frames_processed <= 20 and not source.frames
    finally:
        pipe.stop()
