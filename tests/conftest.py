"""Shared fixtures: the real models and data in ../shared, and a strict mode for CI.

When ../shared (or a tool a test needs) is missing, tests skip on a developer's machine but
FAIL in CI: .ci/run sets EDGEPOSE_REQUIRE_SHARED=1 so that nothing passes by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGEPOSE_SHARED", ROOT.parent / "shared"))
STRICT = os.environ.get("EDGEPOSE_REQUIRE_SHARED") == "1"


def pytest_configure(config) -> None:
    # scripts/test.sh --quick runs -m "not slow" (the everyday tier, under 3 minutes); CI runs everything
    config.addinivalue_line("markers", "slow: a test over ~10 s; left out of scripts/test.sh --quick")


def need(condition: bool, why: str) -> None:
    """Skip (developer machine) or fail (CI) when a required asset or tool is missing."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"required for this test but missing: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def shared() -> Path:
    need(SHARED.is_dir(), f"{SHARED} (the shared models and data) is not there")
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared: Path) -> Path:
    return shared / "models"


@pytest.fixture(scope="session")
def data_dir(shared: Path) -> Path:
    return shared / "data"


def _asset(path: Path, hint: str = "") -> Path:
    need(path.is_file(), f"{path}{hint}")
    return path


@pytest.fixture(scope="session")
def movenet_tflite(models_dir: Path) -> Path:
    return _asset(models_dir / "movenet_singlepose_lightning_int8_4.tflite")


@pytest.fixture(scope="session")
def yolo_tflite(models_dir: Path) -> Path:
    return _asset(models_dir / "yolo11n-pose_int8.tflite")


@pytest.fixture(scope="session")
def yolo_onnx(models_dir: Path) -> Path:
    return _asset(models_dir / "onnx" / "yolo11n-pose_int8_nhwc.onnx")


@pytest.fixture(scope="session")
def shipped_movenet() -> Path:
    return _asset(ROOT / "models" / "movenet-lightning-int8.tflite", " (build it with: python3 scripts/build_models.py)")


@pytest.fixture(scope="session")
def walk_clip(data_dir: Path) -> Path:
    return _asset(data_dir / "video" / "intel_walk.mkv")


@pytest.fixture(scope="session")
def busy_clip(data_dir: Path) -> Path:
    """1394 frames at 10 fps; people walk through a room one by one, often empty."""
    return _asset(data_dir / "video" / "intel_one-by-one-person-detection.mp4")


def require_tool(tool: str, apt_package: str) -> str:
    """The tool's path; a missing tool skips locally and fails in CI, naming the apt package."""
    import shutil

    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    need(path is not None, f"{tool} is not installed: apt-get install -y {apt_package}")
    return path


@pytest.fixture(scope="module")
def live(movenet_tflite, walk_clip):
    """A pipeline with a web output on a looping clip, shared by a test module (tests/web_live.py)."""
    from web_live import start_live

    pipe, web, recorder = start_live(movenet_tflite, walk_clip)
    yield pipe, web, recorder
    pipe.stop()
