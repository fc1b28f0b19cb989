"""Sources and frame conversion: files, images, devices, the bundled sample, odd pixel formats."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.capture.base import EndOfStream, build_source, guess_type, to_rgb8
from edge.config import SourceConfig
from edge.errors import ConfigError, FrameError, SourceError


def test_grayscale_file_becomes_rgb(data_dir):
    gray = cv2.imread(str(data_dir / "images" / "camera.png"), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2
    rgb = to_rgb8(gray)
    assert rgb.shape == gray.shape + (3,) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()


@pytest.mark.parametrize(
    "image, expected_first_pixel",
    [
        (np.array([[[10, 20, 30, 255]]], np.uint8), [30, 20, 10]),  # BGRA -> RGB
        (np.array([[[10, 20, 30]]], np.uint8), [30, 20, 10]),  # BGR -> RGB
        (np.array([[[256 * 10, 256 * 20, 256 * 30]]], np.uint16), [30, 20, 10]),  # 16-bit
        (np.array([[[0.0, 0.5, 1.0]]], np.float32), [255, 127, 0]),  # float 0..1
        (np.array([[7]], np.uint8), [7, 7, 7]),  # grayscale
    ],
)
def test_to_rgb8_table(image, expected_first_pixel):
    out = to_rgb8(image)
    assert out.dtype == np.uint8 and out.shape[2] == 3
    assert out[0, 0].tolist() == expected_first_pixel


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.int64), np.zeros((2, 2, 2, 3), np.uint8), "x"]
)
def test_unconvertible_frames_raise_frame_error(bad):
    with pytest.raises(FrameError):
        to_rgb8(bad)


def test_16bit_png_through_image_source(tmp_path):
    path = tmp_path / "deep.png"
    img = np.zeros((20, 30, 3), np.uint16)
    img[..., 2] = 65535  # red in BGR order
    cv2.imwrite(str(path), img)
    src = build_source(SourceConfig(type="images", path=str(path)))
    src.open()
    rgb, _ = src.read()
    assert rgb.dtype == np.uint8 and rgb[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(EndOfStream):
        src.read()


@pytest.mark.parametrize(
    "spec, kind", [("0", "device"), ("/dev/video2", "device"), ("clip.mp4", "file"), ("a/*.jpg", "images"),
                   ("x.png", "images"), ("auto", "auto"), ("sample", "sample")],
)
def test_guess_type(spec, kind):
    assert guess_type(spec) == kind


def test_video_file_plays_once_then_ends(walk_clip):
    src = build_source(SourceConfig(type="file", path=str(walk_clip), realtime=False))
    src.open()
    n, last_t = 0, 0
    try:
        while True:
            image, t = src.read()
            assert image.shape == (480, 640, 3) and t > last_t
            last_t = t
            n += 1
    except EndOfStream:
        pass
    src.close()
    assert n == 89 and src.fps == pytest.approx(30.0)


def test_video_file_loops(walk_clip):
    src = build_source(SourceConfig(type="file", path=str(walk_clip), realtime=False, loop=True))
    src.open()
    for _ in range(100):  # more than the clip's 89 frames
        assert src.read()[0].shape == (480, 640, 3)
    src.close()


def test_gif_is_a_video(data_dir):
    src = build_source(SourceConfig(type="file", path=str(data_dir / "video" / "intel_people-detection.gif"), realtime=False))
    src.open()
    assert src.read()[0].shape == (270, 480, 3)
    src.close()


def test_folder_and_glob_of_images(data_dir):
    folder = build_source(SourceConfig(type="images", path=str(data_dir / "images")))
    glob_src = build_source(SourceConfig(type="images", path=str(data_dir / "images" / "*.jpg")))
    assert len(folder.files) == 5 and len(glob_src.files) == 3
    assert not folder.continuous


def test_missing_device_names_path_and_fix():
    src = build_source(SourceConfig(type="device", path="/dev/video99"))
    with pytest.raises(SourceError, match=r"/dev/video99.*video' group"):
        src.open()


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        build_source(SourceConfig(type="file", path=str(tmp_path / "nope.mp4"))).open()
    with pytest.raises(SourceError, match="no images"):
        build_source(SourceConfig(type="images", path=str(tmp_path / "*.jpg"))).open()


def test_corrupt_video_is_a_source_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot be opened"):
        build_source(SourceConfig(type="file", path=str(bad))).open()


def test_file_source_needs_a_path():
    with pytest.raises(ConfigError, match="source.path"):
        build_source(SourceConfig(type="file"))


def test_bundled_sample_plays_without_camera():
    src = build_source(SourceConfig(type="sample"))
    src.open()
    image, _ = src.read()
    assert image.ndim == 3 and image.shape[2] == 3 and max(image.shape[:2]) <= 512


@pytest.mark.parametrize("realtime, decode_threads, expected", [
    (False, None, 1),  # as fast as possible: one decoder thread, the model keeps the other cores
    (True, 2, 2),  # asked for explicitly
])
def test_video_file_decoder_threads(walk_clip, realtime, decode_threads, expected):
    import cv2

    src = build_source(SourceConfig(type="file", path=str(walk_clip), realtime=realtime, decode_threads=decode_threads))
    src.open()
    try:
        assert src._cap.get(cv2.CAP_PROP_N_THREADS) == expected
        assert src.read()[0].shape == (480, 640, 3)  # and it still decodes
    finally:
        src.close()


def test_video_file_frames_carry_the_recordings_own_time_across_loops(walk_clip):
    """Read as fast as possible, frames still carry the filmed time (30 fps: 33.3 ms apart), rising across loops."""
    src = build_source(SourceConfig(type="file", path=str(walk_clip), realtime=False, loop=True))
    src.open()
    times = []
    try:
        for _ in range(95):  # the clip's 89 frames, then into the second pass
            src.read()
            times.append(src.media_time_ns)
    finally:
        src.close()
    steps = np.diff(times) / 1e6
    assert times[0] == 0 and all(s > 0 for s in steps)
    assert np.median(steps) == pytest.approx(1000 / 30, abs=1)
    assert times[89] - times[88] == pytest.approx(1e9 / 30, rel=0.05)  # the loop continues the timeline


def test_media_time_counts_frames_when_the_backend_gives_no_timestamps(walk_clip):
    """A backend that reports NaN (or repeats a timestamp) still gets a rising timeline at the file's fps."""
    src = build_source(SourceConfig(type="file", path=str(walk_clip), realtime=False, fps=25))
    times = []
    for pos in (float("nan"), float("nan"), 40.0, 40.0, float("nan")):
        src.media_time_ns = src._media_time(pos)
        times.append(src.media_time_ns)
    assert times == [0, 40_000_000, 80_000_000, 120_000_000, 160_000_000]
