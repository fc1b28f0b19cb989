"""HTTP live view with the real pipeline (MoveNet on intel_walk, looped), checked by real clients:
headless Chromium for the page, OpenCV for the MJPEG, a strict Prometheus text parser for /metrics."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import need
from edge.capture.base import to_rgb8
from edge.config import WebOutput, validate
from edge.errors import OutputError
from edge.outputs.base import build_sink
from edge.pipeline import Pipeline
from edge.types import StreamMeta

DEADLINE_S = 30.0  # the longest any wait in these tests may take before it fails (not a performance figure)


class Recorder:
    """A sink that keeps the last few hundred results by frame index: what the model really said."""

    name = "recorder"

    def __init__(self):
        self.results: OrderedDict[int, object] = OrderedDict()
        self.lock = threading.Lock()

    def open(self, meta):
        self.meta = meta

    def write(self, result):
        with self.lock:
            self.results[result.frame.index] = result
            while len(self.results) > 600:
                self.results.popitem(last=False)

    def get(self, index):
        with self.lock:
            return self.results.get(index)

    def close(self):
        pass


def start_live(model: Path, clip: Path, **web) -> tuple[Pipeline, object, Recorder]:
    cfg = validate({"source": {"type": "file", "path": str(clip), "loop": True, "realtime": True},
                    "model": {"path": str(model)},
                    "outputs": [{"type": "web", "port": 0, **web}]})
    recorder = Recorder()
    web_sink = build_sink(cfg.outputs[0])
    pipe = Pipeline(cfg, sinks=[web_sink, recorder]).start()
    wait_for(lambda: pipe.stats.frames_processed > 3, "the pipeline to process frames")
    return pipe, web_sink, recorder


def wait_for(cond, what: str, timeout: float = DEADLINE_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def live(movenet_tflite, walk_clip):
    pipe, web, recorder = start_live(movenet_tflite, walk_clip)
    yield pipe, web, recorder
    pipe.stop()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def mjpeg_frames(url: str, n: int) -> list[tuple[int, bytes]]:
    """The first ``n`` parts of a multipart MJPEG response, parsed by hand: (declared length, JPEG bytes)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        ctype = r.headers["Content-Type"]
        boundary = re.search(r"boundary=(\S+)", ctype).group(1).encode()
        parts = []
        while len(parts) < n:
            line = r.readline()
            if not line.strip():
                continue
            assert line.strip() == b"--" + boundary, line
            headers = {}
            while (h := r.readline().strip()):
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            length = int(headers["content-length"])
            parts.append((length, r.read(length)))
        return parts


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


PROM_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
PROM_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
PROM_SAMPLE = re.compile(rf"^({PROM_NAME})(?:\{{((?:{PROM_LABEL})(?:,(?:{PROM_LABEL}))*)?\}})? (\S+)(?: -?\d+)?$")


def parse_prometheus(text: str) -> dict[str, dict]:
    """A strict reader of the text format 0.0.4: TYPE before samples, families contiguous, no duplicates."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, dict] = {}
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(PROM_NAME, name), (n, line)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            assert fam["help"] is None and not fam["samples"], f"line {n}: second HELP for {name}"
            fam["help"] = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), (n, line)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            assert fam["type"] is None and not fam["samples"], f"line {n}: TYPE after samples or twice"
            fam["type"] = kind
            current = name
        elif line.startswith("#") or not line:
            assert not line, f"line {n}: stray comment or blank line"
        else:
            m = PROM_SAMPLE.match(line)
            assert m, f"line {n} is not a sample: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            assert name == current, f"line {n}: {name} outside its family block"
            fam = families[name]
            assert fam["type"] is not None, f"{name} has samples but no TYPE"
            assert labels not in fam["samples"], f"duplicate series {name}{{{labels}}}"
            fam["samples"][labels] = float(value)  # float() accepts +Inf, -Inf and NaN as the format does
            if fam["type"] == "counter":
                assert fam["samples"][labels] >= 0 and name.endswith("_total"), line
    return families


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


# -- access, limits and slow clients --------------------------------------------------------------
def test_binds_loopback_by_default():
    assert WebOutput(type="web").host == "127.0.0.1"
    sink = build_sink(WebOutput(type="web", port=0))
    sink.open(StreamMeta("m", "f", "r", (), (), "s", "0", None))
    try:
        assert sink.server._httpd.server_address[0] == "127.0.0.1"
    finally:
        sink.close()


def test_bearer_token_is_required_except_for_healthz(movenet_tflite, walk_clip):
    token = "s3cret-token-123"
    pipe, web, _ = start_live(movenet_tflite, walk_clip, token=token)
    try:
        for path in ["", "metrics", "stream.mjpg", "events"]:
            assert get(web.url + path)[0] == 401, path
            assert get(web.url + path, {"Authorization": "Bearer wrong-token-000"})[0] == 401, path
        assert get(web.url + "metrics", {"Authorization": f"Bearer {token}"})[0] == 200
        assert get(web.url + f"?token={token}")[0] == 200
        assert len(mjpeg_frames(web.url + f"stream.mjpg?overlay=0&token={token}", 1)) == 1
        assert get(web.url + "healthz")[0] == 200
    finally:
        pipe.stop()


def stuck_client(port: int, path: str) -> socket.socket:
    """A client that asks for a stream and then never reads: a tiny receive window, no recv()."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def test_clients_that_never_read_do_not_stall_the_pipeline_and_are_dropped(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, client_timeout_s=1.0, max_fps=60, jpeg_quality=95)
    server = web.server
    port = server.port
    stuck = [stuck_client(port, "/stream.mjpg" if i % 2 else "/stream.mjpg?overlay=0") for i in range(10)]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # connect, say nothing
    try:
        before = pipe.stats.frames_processed
        wait_for(lambda: server.client_counts()["stream"] == 10 or server.clients_dropped, "the stuck clients")
        # While they hang, frames keep flowing and a healthy client still gets fresh frames.
        assert len(mjpeg_frames(web.url + "stream.mjpg", 3)) == 3
        wait_for(lambda: pipe.stats.frames_processed > before + 30, "the pipeline to keep going")
        wait_for(lambda: server.clients_dropped >= 10, "the server to drop the clients that never read")
        fam = parse_prometheus(get(web.url + "metrics")[1].decode())
        assert fam["edgepose_web_clients_dropped_total"]["samples"][""] >= 10
        assert fam["edgepose_web_clients"]["samples"]['endpoint="stream"'] == 0
        assert get(web.url + "healthz")[0] == 200
    finally:
        for s in stuck + idle:
            s.close()
        pipe.stop()
    assert not server._thread.is_alive()


def test_stop_returns_while_clients_are_stuck(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, client_timeout_s=600)
    server = web.server
    stuck = [stuck_client(server.port, "/stream.mjpg") for _ in range(3)]
    try:
        wait_for(lambda: server.client_counts()["stream"] == 3, "the stuck clients to connect")
        pipe.stop()
        assert not server._thread.is_alive()
        wait_for(lambda: server.client_counts()["stream"] == 0, "the client threads to end")
    finally:
        for s in stuck:
            s.close()


def test_too_many_clients_get_503(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, max_clients=2, client_timeout_s=30)
    held = [stuck_client(web.server.port, "/events") for _ in range(2)]
    try:
        wait_for(lambda: web.server.client_counts()["events"] == 2, "two event clients")
        status, body, headers = get(web.url + "metrics")
        assert status == 503 and headers.get("Retry-After") == "5"
    finally:
        for s in held:
            s.close()
        pipe.stop()


def test_port_in_use_names_the_port_and_the_fix():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        sink = build_sink(WebOutput(type="web", port=port))
        with pytest.raises(OutputError, match=rf"127\.0\.0\.1:{port}.*another port"):
            sink.open(StreamMeta("m", "f", "r", (), (), "s", "0", None))
    finally:
        blocker.close()


def test_unknown_path_is_404(live):
    _, web, _ = live
    status, body, _ = get(web.url + "nope")
    assert status == 404 and b"/stream.mjpg" in body


def test_one_encode_serves_every_client_within_the_frame_interval(walk_clip):
    """Ten viewers cost one JPEG per interval, not ten; a client never gets the same frame twice."""
    from edge.outputs.draw import DrawStyle
    from edge.outputs.web import LiveFeed
    from edge.types import Frame, PoseResult

    cap = cv2.VideoCapture(str(walk_clip))
    images = [to_rgb8(cap.read()[1]) for _ in range(3)]
    cap.release()
    feed = LiveFeed(StreamMeta("m", "f", "r", (), (), "s", "0", None), DrawStyle(badge=False), 80, max_fps=0.01)
    feed.publish(PoseResult(Frame(images[0], 0, 1, 0.0), [], {}, 2))
    seq_a, jpeg_a = feed.jpeg(overlay=False, after=0)
    feed.publish(PoseResult(Frame(images[1], 1, 1, 0.0), [], {}, 2))
    seq_b, jpeg_b = feed.jpeg(overlay=False, after=0)  # a second client, within the interval: shared
    assert (seq_b, jpeg_b) == (seq_a, jpeg_a) and jpeg_b is jpeg_a
    seq_c, jpeg_c = feed.jpeg(overlay=False, after=seq_a)  # the first client again: it gets the new frame
    assert seq_c == 2 and jpeg_c != jpeg_a
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg_c, np.uint8), 1), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - images[1]).mean() < 4  # it is frame 1's picture
    assert feed.wait_newer(2, timeout=0.01) is None
