"""The model zoo: models/zoo.yaml by id, a cache directory, and verified, resumable downloads.

A model is named by path, by zoo id, or 'default' (the shipped MoveNet Lightning INT8).
Downloads go to ``<file>.part``, resume with an HTTP Range request, are checked against the
zoo's sha256 and only then renamed into place: a failed or corrupt download leaves nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from edge.errors import ModelError

log = logging.getLogger(__name__)
DEFAULT_MODEL = "movenet-lightning-int8.tflite"
CHUNK = 1 << 16


@dataclass(frozen=True)
class ZooEntry:
    id: str
    family: str
    file: str
    input: str
    sha256: str
    license: str
    size: int
    url: str | None = None
    source: str = ""
    shipped: bool = False
    notes: str = ""


def shipped_dirs() -> list[Path]:
    """Where shipped model files live: the checkout's models/, or <prefix>/share/edgepose/models."""
    return [Path(__file__).resolve().parent.parent / "models", Path(sys.prefix) / "share" / "edgepose" / "models"]


def cache_dir() -> Path:
    """$EDGEPOSE_MODELS, else the systemd StateDirectory, else ~/.cache/edgepose/models."""
    env = os.environ.get("EDGEPOSE_MODELS")
    if env:
        return Path(env)
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "models"
    return Path.home() / ".cache" / "edgepose" / "models"


def search_dirs() -> list[Path]:
    return [cache_dir(), *shipped_dirs()]


def load_zoo() -> dict[str, ZooEntry]:
    for d in shipped_dirs():
        path = d / "zoo.yaml"
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return {m["id"]: ZooEntry(**m) for m in data.get("models", [])}
    return {}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def local_file(entry: ZooEntry) -> Path | None:
    for d in search_dirs():
        if (d / entry.file).is_file():
            return d / entry.file
    return None


def how_to_get(entry: ZooEntry) -> str:
    """What to do about a zoo model that is not here: `models pull` only when the zoo has a URL for it."""
    if entry.url:
        return f"not downloaded yet; run: edgepose models pull {entry.id}"
    how = entry.notes or (f"no public download; it is {entry.source}" if entry.source else "no public download")
    return f"not here ({how}); put {entry.file} into {cache_dir()}"


def resolve_model(spec: str) -> Path:
    """The file for a model path, a zoo id, a bare file name in the search dirs, or 'default'."""
    name = DEFAULT_MODEL if spec in ("", "default") else spec
    p = Path(name).expanduser()
    if p.is_file():
        return p
    zoo = load_zoo()
    if name in zoo:
        found = local_file(zoo[name])
        if found:
            return found
        raise ModelError(f"zoo model '{name}' is {how_to_get(zoo[name])}")
    if len(p.parts) == 1:
        for d in search_dirs():
            if (d / name).is_file():
                return d / name
    if spec in ("", "default"):
        looked = ", ".join(str(d) for d in search_dirs())
        raise ModelError(
            f"the shipped default model {DEFAULT_MODEL} was not found (looked in {looked}); reinstall edgepose "
            "or rebuild it with: python3 scripts/build_models.py"
        )
    raise ModelError(f"model {spec} does not exist: give a model file or a zoo id (edgepose models list)")


Progress = Callable[[int, int], None]


def _progress_bar(label: str) -> Progress | None:
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        pct = 100.0 * done / total if total else 0.0
        bar = "#" * int(pct / 5)
        sys.stderr.write(f"\r{label} [{bar:<20}] {pct:5.1f}% {done / 1e6:.1f}/{total / 1e6:.1f} MB")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _download(url: str, part: Path, total: int, progress: Progress | None, timeout: float) -> None:
    """Append the rest of ``url`` to ``part``, resuming from its current size."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (zoo URLs and mirrors)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete
            return
        raise ModelError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ModelError(f"download of {url} failed: {getattr(exc, 'reason', exc)}; check the network or "
                         "use --from with a local mirror") from None
    with response:
        mode = "ab" if have and response.status == 206 else "wb"
        done = have if mode == "ab" else 0
        if mode == "ab":
            log.info("resuming %s at %d bytes", part.name, have)
        with part.open(mode) as f:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total or done)
            except (OSError, urllib.error.URLError) as exc:
                raise ModelError(f"download of {url} was interrupted after {done} bytes ({exc}); run the same "
                                 "command again to resume") from None
        length = response.headers.get("Content-Length")
        expected = (done - (done - have if mode == "ab" else done)) + int(length) if length else None
        if expected is not None and done < expected:
            raise ModelError(f"download of {url} was interrupted after {done} of {expected} bytes; run the same "
                             "command again to resume")


def pull(model_id: str, mirror: str | None = None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download (or copy from a mirror) a zoo model into the cache, verified by sha256."""
    zoo = load_zoo()
    if model_id not in zoo:
        raise ModelError(f"unknown zoo id '{model_id}'; see: edgepose models list")
    entry = zoo[model_id]
    dest_dir = cache_dir()
    dest = dest_dir / entry.file
    if dest.is_file() and sha256_of(dest) == entry.sha256:
        return dest
    if entry.shipped and not mirror:
        found = local_file(entry)
        if found:
            return found
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if mirror and not mirror.startswith(("http://", "https://")):
        src = Path(mirror) / entry.file
        if not src.is_file():
            raise ModelError(f"mirror {mirror} has no {entry.file}")
        shutil.copyfile(src, part)
    else:
        url = f"{mirror.rstrip('/')}/{entry.file}" if mirror else entry.url
        if not url:
            raise ModelError(f"zoo model '{model_id}' has no download URL ({entry.notes or entry.source}); "
                             "pass --from DIR_OR_URL with a mirror that holds it")
        _download(url, part, entry.size, _progress_bar(model_id) if progress else None, timeout)
        log.info("downloaded %s (%d bytes)", entry.file, part.stat().st_size)
    digest = sha256_of(part)
    if digest != entry.sha256:
        part.unlink(missing_ok=True)
        raise ModelError(f"download of '{model_id}' is corrupt: sha256 {digest} does not match the zoo's "
                         f"{entry.sha256}; nothing was saved. Try again or use another mirror.")
    os.replace(part, dest)
    return dest


def verify() -> list[tuple[str, str, Path | None]]:
    """(id, 'ok' | 'missing' | 'MISMATCH', path) for every zoo model."""
    rows = []
    for entry in load_zoo().values():
        path = local_file(entry)
        status = "missing" if path is None else ("ok" if sha256_of(path) == entry.sha256 else "MISMATCH")
        rows.append((entry.id, status, path))
    return rows
