"""Model zoo downloads against a local HTTP server that serves ../shared/models (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import pytest

from edge import zoo
from edge.errors import ModelError


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; optional faults: corrupt bytes, or cut the body short once; honours Range."""

    corrupt: set[str] = set()
    cut_once: set[str] = set()
    ranges_seen: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        name = path.name
        if name in self.corrupt:
            data = data[:100] + bytes(b ^ 0xFF for b in data[100:200]) + data[200:]
        start = 0
        if "Range" in self.headers:
            self.ranges_seen.append(self.headers["Range"])
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if name in self.cut_once:
            self.cut_once.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-download
            return
        self.wfile.write(body)


@pytest.fixture
def server(models_dir):
    Handler.corrupt, Handler.cut_once, Handler.ranges_seen = set(), set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(models_dir)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPOSE_MODELS", str(tmp_path / "cache"))
    return tmp_path / "cache"


ID, FILE = "movenet-lightning-int8-google", "movenet_singlepose_lightning_int8_4.tflite"


def test_zoo_entries_match_the_real_files(models_dir):
    entries = zoo.load_zoo()
    assert ID in entries
    for e in entries.values():
        if e.shipped:
            path = zoo.local_file(e)
            assert path is not None and zoo.sha256_of(path) == e.sha256
            continue
        real = next(models_dir.rglob(e.file), None)
        if real is not None:  # every entry mirrored in ../shared has the right hash and size
            assert zoo.sha256_of(real) == e.sha256 and real.stat().st_size == e.size


def test_good_download_is_verified_and_resolvable(server, cache, models_dir):
    path = zoo.pull(ID, mirror=server, progress=False)
    assert path == cache / FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == zoo.load_zoo()[ID].sha256
    assert zoo.resolve_model(ID) == path  # config may name the model by zoo id
    assert not list(cache.glob("*.part"))


def test_corrupt_download_leaves_nothing(server, cache):
    Handler.corrupt.add(FILE)
    with pytest.raises(ModelError, match="corrupt.*nothing was saved"):
        zoo.pull(ID, mirror=server, progress=False)
    assert not any(cache.iterdir())


def test_interrupted_download_resumes(server, cache):
    Handler.cut_once.add(FILE)
    with pytest.raises(ModelError, match="interrupted.*again to resume"):
        zoo.pull(ID, mirror=server, progress=False)
    part = cache / (FILE + ".part")
    size = part.stat().st_size
    assert 0 < size < zoo.load_zoo()[ID].size
    path = zoo.pull(ID, mirror=server, progress=False)
    assert Handler.ranges_seen == [f"bytes={size}-"]
    assert zoo.sha256_of(path) == zoo.load_zoo()[ID].sha256 and not part.exists()


def test_mirror_directory_and_verify(cache, models_dir):
    path = zoo.pull(ID, mirror=str(models_dir), progress=False)
    rows = {i: s for i, s, _ in zoo.verify()}
    assert rows[ID] == "ok"
    path.write_bytes(b"tampered")
    assert {i: s for i, s, _ in zoo.verify()}[ID] == "MISMATCH"


def test_unknown_id_and_missing_url(cache):
    with pytest.raises(ModelError, match="unknown zoo id"):
        zoo.pull("no-such-model", progress=False)
    with pytest.raises(ModelError, match="--from"):
        zoo.pull("yolo11n-pose-int8-tflite", progress=False)  # no public URL
    with pytest.raises(ModelError, match="no public download") as err:
        zoo.resolve_model("yolo11n-pose-int8-tflite")
    assert "models pull" not in str(err.value)  # there is nothing to pull it from
    with pytest.raises(ModelError, match=f"edgepose models pull {ID}"):
        zoo.resolve_model(ID)  # this one has a URL


def _no_url_entries() -> list[str]:
    return [e.id for e in zoo.load_zoo().values() if not e.url and not e.shipped]


def test_how_to_get_suggests_pull_only_with_a_url():
    entries = zoo.load_zoo()
    assert _no_url_entries() and "models pull" in zoo.how_to_get(entries[ID])
    for i in _no_url_entries():
        hint = zoo.how_to_get(entries[i])
        assert "models pull" not in hint and entries[i].file in hint and str(zoo.cache_dir()) in hint


def test_models_info_without_url_does_not_suggest_pull(cache):
    from test_cli import edgepose

    env = {**os.environ, "EDGEPOSE_MODELS": str(cache)}
    for i in ("yolo11n-pose-int8-tflite", "blazepose-lite"):
        proc = edgepose("models", "info", i, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "models pull" not in proc.stdout + proc.stderr
        assert "url: none (no public download)" in proc.stdout
        assert f"put {zoo.load_zoo()[i].file} into {cache}" in proc.stdout  # where the file goes instead
    proc = edgepose("models", "info", ID, env=env)
    assert f"local file: not downloaded yet; run: edgepose models pull {ID}" in proc.stdout


def test_unreachable_mirror_is_a_clear_error(cache):
    with pytest.raises(ModelError, match="failed"):
        zoo.pull(ID, mirror="http://127.0.0.1:9", progress=False, timeout=2)
    assert not any(p.suffix == ".tflite" for p in cache.glob("*"))
