"""Cameras as they are mounted: source.rotate (clockwise), then source.hflip / source.vflip.

The turn is applied by each source as it reads a frame, so the model, the keypoints, the outputs and
the JSON width/height all see the turned picture. Real parts throughout: the real clip and model, the
real pipeline, real sources; the only fake is picamera2 (there is no Pi camera here, tests/fakes).
"""

from __future__ import annotations

import itertools
import json
import logging

import cv2
import numpy as np
import pytest

from edge.capture.base import Turn, build_source
from edge.capture.opencv import Capture
from edge.config import Config, SourceConfig, validate
from edge.errors import ConfigError
from edge.outputs.base import build_sink
from edge.outputs.draw import annotate
from edge.pipeline import Pipeline, load_model
from ip_cameras import MjpegCamera
from test_cli import assert_user_error, edgepose
from test_hostile_frames import Collect  # a sink that keeps every result
from test_picamera import fake  # noqa: F401  (fixture: the fake picamera2 serving the walking clip)

COMBOS = list(itertools.product((0, 90, 180, 270), (False, True), (False, True)))
FRAMES = 30  # of the real clip, for the pipeline runs
KP_SCORE, KP_TOL = 0.3, 3.0  # keypoints compared when both scores are above KP_SCORE; within KP_TOL px
SIDEWAYS_TOL = 0.12  # the model on a sideways picture vs upright: median keypoint offset / box diagonal (see below)


def documented(x, y, w, h, rotate, hflip, vflip):
    """Where pixel (x, y) of a w x h picture goes: the formulas of docs/CAMERAS.md, written out again."""
    if rotate == 90:
        x, y, w, h = h - 1 - y, x, h, w
    elif rotate == 180:
        x, y = w - 1 - x, h - 1 - y
    elif rotate == 270:
        x, y, w, h = y, w - 1 - x, h, w
    return (w - 1 - x if hflip else x), (h - 1 - y if vflip else y)


def coordinate_image(w: int = 7, h: int = 5) -> np.ndarray:
    """An asymmetric RGB image whose pixel (x, y) holds (x, y, 200): where each pixel went can be read back."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.dstack([xs, ys, np.full_like(xs, 200)]).astype(np.uint8)


# -- 1. the mapping ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rotate, hflip, vflip", COMBOS)
def test_every_combination_maps_pixels_as_documented(rotate, hflip, vflip):
    image = coordinate_image()
    before = image.copy()
    turn = Turn(rotate, hflip, vflip)
    out = turn.apply(image)
    assert np.array_equal(image, before)  # the source's array is never changed
    h, w = image.shape[:2]
    assert out.shape == ((w, h, 3) if rotate in (90, 270) else (h, w, 3)) and out.flags["C_CONTIGUOUS"]
    assert turn.size(w, h) == out.shape[1::-1]
    for y, x in itertools.product(range(h), range(w)):
        X, Y = documented(x, y, w, h, rotate, hflip, vflip)
        assert tuple(out[Y, X]) == (x, y, 200), (x, y, X, Y)
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).reshape(-1, 2)
    mapped = turn.points(grid, w, h)
    assert [tuple(p) for p in mapped.astype(int)] == [documented(x, y, w, h, rotate, hflip, vflip) for x, y in grid]


@pytest.mark.parametrize("rotate, hflip, vflip", COMBOS)
def test_the_isp_part_then_the_software_part_is_the_whole_turn(rotate, hflip, vflip):
    """picamera: mirrors first (the ISP), then a quarter turn or nothing (software), never the other way."""
    image = coordinate_image()
    turn = Turn(rotate, hflip, vflip)
    isp, software = turn.flips_then_rotation()
    assert isp.rotate == 0 and not (software.hflip or software.vflip) and software.rotate in (0, 90, 270)
    assert np.array_equal(software.apply(isp.apply(image)), turn.apply(image))
    assert bool(software) == (rotate in (90, 270))  # only a quarter turn costs CPU on a Pi camera


def test_no_turn_is_free():
    image = coordinate_image()
    assert not Turn() and Turn().apply(image) is image and str(Turn()) == "no turn"
    assert str(Turn(90, True)) == "rotate 90, hflip"


@pytest.mark.parametrize("value", [45, -90, 360, "90", True, "left"])
def test_a_wrong_rotation_is_a_config_error_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"source\.rotate: Input should be 0, 90, 180 or 270"):
        validate({"source": {"rotate": value}})


def test_the_command_line_takes_rotate_and_flips():
    from edge.cli import build_parser, resolve_config

    cfg = resolve_config(build_parser().parse_args(["run", "--rotate", "270", "--hflip"]))
    assert (cfg.source.rotate, cfg.source.hflip, cfg.source.vflip) == (270, True, False)
    proc = edgepose("run", "--source", "sample", "--rotate", "45", "-q", timeout=120)
    assert_user_error(proc, 2, "source.rotate: Input should be 0, 90, 180 or 270 (got 45)")


# -- sources: every type turns what it reads ---------------------------------------------------------

def _first_frame(clip) -> np.ndarray:
    cap = cv2.VideoCapture(str(clip))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("rotate, hflip, vflip", [(90, False, False), (270, True, False), (180, False, True)])
def test_file_images_and_sample_sources_read_the_turned_picture(tmp_path, walk_clip, rotate, hflip, vflip):
    turn = Turn(rotate, hflip, vflip)
    upright = _first_frame(walk_clip)
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), cv2.cvtColor(upright, cv2.COLOR_RGB2BGR))
    for kind, path in [("file", str(walk_clip)), ("images", str(still)), ("sample", None)]:
        read = []
        for turned in (dict(rotate=rotate, hflip=hflip, vflip=vflip), {}):
            src = build_source(SourceConfig(type=kind, path=path, realtime=False, **turned))
            src.open()
            read.append(src.read()[0])
            src.close()
        image, original = read
        assert np.array_equal(image, turn.apply(original)), kind
        if kind != "sample":
            assert np.array_equal(image, turn.apply(upright)), kind


def test_device_source_turns_what_the_camera_delivers(walk_clip):
    """A V4L2 camera is not there: its capture reads the clip instead; DeviceSource.read() is the real one."""
    src = build_source(SourceConfig(type="device", path="/dev/video0", rotate=90, hflip=True)).inner
    src._cap = Capture(cv2.VideoCapture(str(walk_clip)))
    image, _ = src.read()
    src.close()
    assert image.shape == (640, 480, 3)
    assert np.array_equal(image, Turn(90, True).apply(_first_frame(walk_clip)))


def test_network_source_turns_the_stream(walk_clip):
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(_first_frame(walk_clip), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    cam = MjpegCamera([jpeg], user="viewer", password="not-a-secret").start()
    try:
        src = build_source(SourceConfig(type="network", path=cam.url, rotate=270))
        src.open()
        got = None
        while got is None:
            got = src.read()
        src.close()
    finally:
        cam.stop()
    image = got[0]
    assert image.shape == (640, 480, 3)
    assert np.abs(image.astype(np.int16) - Turn(270).apply(decoded)).mean() < 1.5  # FFmpeg's vs libjpeg's decoder


# -- 2. acceptance: the real pipeline on a clip filmed sideways ---------------------------------------

@pytest.fixture(scope="module")
def yolo(yolo_tflite):
    model = load_model(Config.model_validate({"model": {"path": str(yolo_tflite), "threads": 2}}))
    yield model
    model.backend.close()


def _write_clip(frames: list[np.ndarray], folder, name: str) -> dict:
    """A lossless clip (FFV1 in .mkv) of ``frames`` (BGR) that decodes to exactly these pixels; PNG stills
    (the images source) where this OpenCV cannot write or read FFV1 losslessly."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.mkv"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (w, h))
    if writer.isOpened():
        for f in frames:
            writer.write(f)
        writer.release()
        cap = cv2.VideoCapture(str(path))
        decoded = [cap.read()[1] for _ in frames]
        cap.release()
        if all(d is not None and np.array_equal(d, f) for d, f in zip(decoded, frames)):
            return {"type": "file", "path": str(path), "realtime": False}
    stills = folder / name
    stills.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(stills / f"{i:04d}.png"), f)
    return {"type": "images", "path": str(stills)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, walk_clip):
    """The first FRAMES frames of the walking clip, upright and turned 90 degrees clockwise (filmed sideways)."""
    cap = cv2.VideoCapture(str(walk_clip))
    frames = [cap.read()[1] for _ in range(FRAMES)]
    cap.release()
    assert all(f is not None for f in frames)
    folder = tmp_path_factory.mktemp("turned")
    upright = _write_clip(frames, folder, "upright")
    sideways = _write_clip([cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE) for f in frames], folder, "sideways")
    return upright, sideways


def run(model, source: dict, tmp_path, name: str):
    """The real pipeline on ``source``: every result, the JSON lines it wrote, and the pipeline."""
    jsonl = tmp_path / f"{name}.jsonl"
    cfg = validate({
        "source": source, "model": {"path": str(model.path)},
        "tracking": {"enabled": False}, "smoothing": {"enabled": False},  # the poses as decoded
        "pipeline": {"sink_queue": 1000}, "outputs": [{"type": "jsonl", "path": str(jsonl)}]})
    rec = Collect()
    pipe = Pipeline(cfg, model=model, sinks=[rec, build_sink(cfg.outputs[0])])
    pipe.run()
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return rec.results, lines, pipe


def _match(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    """Pair each pose of ``a`` with the nearest one left in ``b`` (mean distance over all keypoints); per pair,
    the distances of the keypoints both are sure of (score above KP_SCORE; a far, small person may have none)."""
    pairs, free = [], list(range(len(b)))
    for ka in a:
        best = min(free, key=lambda j: np.linalg.norm(ka[:, :2] - b[j][:, :2], axis=1).mean())
        free.remove(best)
        sure = (ka[:, 2] > KP_SCORE) & (b[best][:, 2] > KP_SCORE)
        pairs.append(np.linalg.norm(ka[sure, :2] - b[best][sure, :2], axis=1))
    return pairs


def test_rotate_270_gives_back_the_upright_keypoints_and_the_mapping_holds(clips, yolo, tmp_path):
    upright_src, sideways_src = clips
    upright, up_lines, _ = run(yolo, upright_src, tmp_path, "upright")
    turned, turned_lines, _ = run(yolo, {**sideways_src, "rotate": 270}, tmp_path, "turned")
    assert len(upright) == len(turned) == FRAMES
    assert sum(len(r.poses) for r in upright) >= FRAMES  # the walkers are found upright
    compared = 0
    for u, t in zip(upright, turned):
        assert t.frame.image.shape == u.frame.image.shape == (480, 640, 3)
        assert len(t.poses) == len(u.poses), u.frame.index
        for d in _match([p.keypoints for p in u.poses], [p.keypoints for p in t.poses]):
            assert d.max(initial=0.0) <= KP_TOL, (u.frame.index, d)
            compared += d.size
    assert compared >= 10 * FRAMES  # keypoints compared: about 12 of 17 for the walker, every frame
    assert [(x["width"], x["height"]) for x in turned_lines] == [(640, 480)] * FRAMES

    # The sideways clip read as it is: keypoints in its 480x640 picture, mapped back to the upright picture
    # with the documented formula (rotate 270 undoes rotate 90). The model then sees a person lying on
    # their side, another picture: it finds the walker in every frame, but places the keypoints 18-40 px
    # (median) from where it places them upright, never within 3 px (measured: 4-9 % of the person's box
    # diagonal). So this checks the mapping, not the model: the median must be within SIDEWAYS_TOL of the
    # diagonal, where a wrong mapping is further: rotate 90, a mirror or a half turn 29-50 %, the mirror
    # image of the right mapping (a walker is nearly symmetric) 17-27 %.
    sideways, side_lines, _ = run(yolo, sideways_src, tmp_path, "sideways")
    assert [(x["width"], x["height"]) for x in side_lines] == [(480, 640)] * FRAMES

    def offsets(back: Turn) -> list[float]:  # per compared person: median distance / box diagonal
        out = []
        for u, s in zip(upright, sideways):
            assert s.frame.image.shape == (640, 480, 3)
            if not u.poses or len(s.poses) != len(u.poses):  # people may differ sideways: compare like with like
                continue
            mapped = [np.column_stack([back.points(p.keypoints[:, :2], 480, 640), p.keypoints[:, 2]]) for p in s.poses]
            for p, d in zip(u.poses, _match([p.keypoints for p in u.poses], mapped)):
                x1, y1, x2, y2 = p.bbox
                out.append(np.median(d) / np.hypot(x2 - x1, y2 - y1) if d.size else np.inf)
        return out

    right = offsets(Turn(270))
    assert len(right) >= FRAMES // 2, f"only {len(right)} sideways frames found as many people as upright"
    assert max(right) <= SIDEWAYS_TOL, right
    for wrong in (Turn(90), Turn(0, True), Turn(180), Turn(270, True)):
        assert min(offsets(wrong)) > SIDEWAYS_TOL, wrong  # the check can tell a wrong mapping


# -- 3. the outputs see the turned picture -----------------------------------------------------------

@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_results_live_view_and_json_carry_the_turned_frame(yolo, tmp_path, rotate):
    results, lines, pipe = run(yolo, {"type": "sample", "rotate": rotate, "realtime": False}, tmp_path, "sample")
    plain = build_source(SourceConfig(type="sample"))
    plain.open()
    originals = [plain.read()[0] for _ in results]
    plain.close()
    assert results and len(lines) == len(results)
    for r, line, original in zip(results, lines, originals):
        h, w = original.shape[:2]
        turned = (w, h, 3) if rotate in (90, 270) else (h, w, 3)
        assert r.frame.image.shape == turned and np.array_equal(r.frame.image, Turn(rotate).apply(original))
        assert annotate(r, pipe.meta).shape == turned  # what the live view and the framebuffer show
        assert (line["width"], line["height"]) == (turned[1], turned[0])
        for person in line["people"]:  # keypoints lie in the turned picture
            xy = np.array([k[:2] for k in person["keypoints"]])
            assert (xy >= 0).all() and (xy[:, 0] <= turned[1] - 1).all() and (xy[:, 1] <= turned[0] - 1).all()


# -- 4. picamera: the ISP flips, software turns by a quarter -----------------------------------------

def _picamera(fake, model_size=(192, 192), **turn):  # noqa: F811
    src = build_source(SourceConfig(type="picamera", width=640, height=480, fps=120, **turn))
    src.model_input_size = model_size
    src.open()
    return src


@pytest.mark.parametrize("turn, isp", [
    ({"hflip": True}, (True, False)), ({"vflip": True}, (False, True)), ({"rotate": 180}, (True, True)),
    ({"rotate": 180, "hflip": True}, (False, True)), ({"hflip": True, "vflip": True}, (True, True)),
])
def test_picamera_flips_and_half_turns_go_to_the_isp(fake, clip_frames, turn, isp):  # noqa: F811
    from libcamera import Transform

    src = _picamera(fake, **turn)
    main, _ = src.read()
    transform = fake.FAKE.configs[-1]["transform"]
    assert transform == Transform(hflip=isp[0], vflip=isp[1]) and not transform.transpose
    assert not src.software_turn  # nothing is done twice: the picture comes from the ISP as it is wanted
    expected = Turn(turn.get("rotate", 0), turn.get("hflip", False), turn.get("vflip", False)).apply(clip_frames[0])
    assert np.array_equal(main, expected)
    lores = src.model_image
    assert lores.shape == (144, 192, 3)  # mirrored by the sensor like main
    assert np.abs(lores.astype(np.int16) - cv2.resize(expected, (192, 144), interpolation=cv2.INTER_AREA)).mean() < 4
    src.close()


@pytest.mark.parametrize("turn, isp, software", [
    ({"rotate": 90}, (False, False), 90), ({"rotate": 270}, (False, False), 270),
    ({"rotate": 90, "hflip": True}, (True, False), 270), ({"rotate": 270, "vflip": True}, (False, True), 90),
])
def test_picamera_quarter_turns_are_done_in_software_to_main_and_lores(fake, clip_frames, caplog, turn, isp,
                                                                       software):  # noqa: F811
    from libcamera import Transform

    caplog.set_level(logging.INFO, logger="edge.capture.picamera")
    src = _picamera(fake, **turn)
    for i in range(3):
        main, _ = src.read()
        expected = Turn(turn["rotate"], turn.get("hflip", False), turn.get("vflip", False)).apply(clip_frames[i])
        assert main.shape == (640, 480, 3) and np.array_equal(main, expected)
        lores = src.model_image  # turned too: 144x192, main's aspect ratio
        assert lores.shape == (192, 144, 3) and lores.flags["C_CONTIGUOUS"]
        small = cv2.resize(expected, (144, 192), interpolation=cv2.INTER_AREA).astype(np.int16)
        assert np.abs(lores.astype(np.int16) - small).mean() < 4
    config = fake.FAKE.configs[-1]
    assert config["transform"] == Transform(hflip=isp[0], vflip=isp[1])  # the default identity when nothing
    assert config["main"]["size"] == (640, 480) and config["lores"]["size"] == (192, 144)  # the sensor's own way
    assert src.software_turn == Turn(software)
    assert f"by the ISP, rotate {software} in software" in caplog.text
    src.close()
    assert fake.FAKE.outstanding == 0


def test_picamera_lores_fits_a_wide_model_input_after_a_quarter_turn(fake):  # noqa: F811
    src = _picamera(fake, model_size=(256, 192), rotate=90)
    src.read()
    h, w = src.model_image.shape[:2]
    assert (w, h) == (144, 192) and w <= 256 and h <= 192 and abs(w / h - 480 / 640) < 0.01
    src.close()


def test_the_fake_isp_refuses_what_a_pi_cannot_do(fake):  # noqa: F811
    """The fake is strict: a transpose (90/270) or no Transform at all is refused, as on a Pi."""
    from libcamera import Transform

    cam = fake.Picamera2(0)
    for bad in (Transform(rotation=90), None):
        with pytest.raises(RuntimeError):
            cam.configure(cam.create_video_configuration(main={"size": (320, 240), "format": "BGR888"},
                                                         transform=bad))
    cam.close()


def test_picamera_pipeline_poses_the_turned_picture(fake, yolo):  # noqa: F811
    cfg = Config.model_validate({
        "model": {"path": str(yolo.path)},
        "source": {"type": "picamera", "width": 1280, "height": 720, "fps": 60, "rotate": 90},
        "pipeline": {"max_frames": 3}, "outputs": []})
    rec = Collect()
    Pipeline(cfg, model=yolo, sinks=[rec]).run()
    assert len(rec.results) >= 3 and fake.FAKE.configs[-1]["lores"]["size"] == (640, 360)
    for r in rec.results:  # main 720x1280 and the model's 360x640 lores, both turned
        assert r.frame.image.shape == (1280, 720, 3) and r.frame.model_image.shape == (640, 360, 3)
    assert fake.FAKE.outstanding == 0


@pytest.fixture(scope="module")
def clip_frames(walk_clip) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(walk_clip))
    frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(4)]
    cap.release()
    return frames
