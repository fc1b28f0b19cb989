"""Hostile and careless config files: each is a clean exit 2 with one clear message, fast and small.

Alias bombs, deep nesting, huge files and values, bytes that are not UTF-8, non-finite numbers,
duplicate keys; secrets under any key (even a misspelt one) masked in errors, `check` output and
reload logs; and `check` refusing exactly what `run` refuses before it starts.
"""

from __future__ import annotations

import logging
import resource
import signal
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from edge.cli import main
from edge.config import load_config, validate
from edge.configbase import Strict
from edge.errors import ConfigError, brief, is_secret_key, mask_text

MEMORY = 1 << 30  # address space for one `edgepose check`: the bomb once took 3.4 GB
SECRET = "hunter2-0xC0FFEE"


def edgepose(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a child capped at MEMORY bytes of address space; ``.elapsed`` is its wall time."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, env=env)
    proc.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    return proc


def assert_clean_2(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for n in needles:
        assert n in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture
def root_logger():
    """main() installs its stderr handler on the root logger: put things back afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    yield root
    for h in list(root.handlers):
        if h not in saved_handlers:
            root.removeHandler(h)
    root.setLevel(saved_level)


@pytest.fixture
def cli(capsys, root_logger):
    """``edge.cli.main`` in this process (fast): returns (exit code, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return run


def write(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value)


# --- 1. size, depth and alias limits ----------------------------------------------------------------

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi"))
BOMB_CONFIG = BILLION_LAUGHS.replace("i: &i", "model:\n  providers: &i") + "pipeline: {sink_queue: 1}\n"


def test_alias_bomb_is_refused_in_a_second_not_110_s(tmp_path):
    cfg = write(tmp_path, BOMB_CONFIG)
    assert len(BOMB_CONFIG) < 1200
    proc = edgepose("check", str(cfg), timeout=60)
    err = assert_clean_2(proc, "alias", "more than 10000 values", "line ")
    assert len(err.splitlines()) == 1 and proc.elapsed < 15, (proc.elapsed, err)


def test_a_recursive_alias_is_refused(tmp_path):
    msg = config_error(write(tmp_path, "model:\n  providers: &a [x, *a]\n"))
    assert "the alias at line 2 refers to a collection that contains it" in msg


def test_ordinary_anchors_aliases_and_merges_still_work(tmp_path):
    cfg = load_config(write(tmp_path, "outputs:\n  - &mq {type: mqtt, host: broker, qos: 0}\n"
                            "  - {<<: *mq, host: other}\nmodel:\n  providers: &p [CPUExecutionProvider]\n"))
    assert [(o.host, o.qos) for o in cfg.outputs] == [("broker", 0), ("other", 0)]


@pytest.mark.parametrize("text", [
    "model: " + "[" * 500 + "]" * 500 + "\n",  # flow: a RecursionError traceback before
    "".join(f"{'  ' * i}k{i}:\n" for i in range(500)) + "  " * 500 + "v: 1\n",  # block mappings
    "source:\n  controls:\n    a: " + "[" * 40 + "1" + "]" * 40 + "\n",  # just past the limit
], ids=["flow-500", "block-500", "flow-40"])
def test_deep_nesting_is_refused_with_a_line(tmp_path, text, cli):
    code, _, err = cli("check", str(write(tmp_path, text)))
    assert code == 2 and "nested more than 32 levels deep at line" in err, err


def test_a_5_mb_file_is_refused_without_reading_it(tmp_path):
    cfg = write(tmp_path, "model:\n  providers: [" + ",".join(["CPUExecutionProvider"] * 250_000) + "]\n")
    assert cfg.stat().st_size > 5_000_000
    t0 = time.monotonic()
    msg = config_error(cfg)
    assert time.monotonic() - t0 < 1 and "may be at most 1024 KB" in msg and "5." in msg


def test_a_big_list_within_the_size_limit_is_refused_fast(tmp_path):
    cfg = write(tmp_path, "model:\n  providers: [" + ",".join(["1"] * 400_000) + "]\n")  # 800 KB
    t0 = time.monotonic()
    msg = config_error(cfg)
    assert time.monotonic() - t0 < 3 and "more than 10000 values" in msg


def test_a_huge_bad_value_is_echoed_in_100_chars_with_its_length(tmp_path, cli):
    cfg = write(tmp_path, "model:\n  threads: " + "x" * 1_000_000 + "\n")  # was a 1 MB stderr line
    code, _, err = cli("check", str(cfg))
    assert code == 2 and "model.threads" in err and "... (1000000 chars)" in err and len(err) < 600, err


def test_thousands_of_bad_values_list_twenty_and_count_the_rest(tmp_path):
    cfg = write(tmp_path, "model:\n  providers: [" + ",".join(["1"] * 5000) + "]\n")
    msg = config_error(cfg)
    assert "model.providers.19:" in msg and "model.providers.20:" not in msg
    assert "... and 4980 more errors" in msg and len(msg) < 3000


def test_a_huge_key_and_a_huge_integer_are_capped(tmp_path):
    msg = config_error(write(tmp_path, "? " + "k" * 200_000 + "\n: 1\nmodel:\n  threads: 0x" + "f" * 20_000 + "\n"))
    assert len(msg) < 1000 and "unknown key" in msg and "model.threads" in msg


def test_brief_caps_every_kind_of_value_lazily():
    assert brief("webcam") == "'webcam'" and brief(2) == "2" and brief(None) == "None"
    values = list(range(5_000_000))
    t0 = time.monotonic()
    huge = brief(values)
    assert time.monotonic() - t0 < 0.1 and huge.endswith("... (5000000 items)") and len(huge) < 130
    assert brief("x" * 5_000_000).endswith("... (5000000 chars)")
    assert brief(int("7" * 3000) ** 2).startswith("<an integer of 19931 bits>")  # past Python's str() limit


# --- 3. tracebacks that are now exit 2 ------------------------------------------------------------

def test_a_file_that_is_not_utf8_names_the_byte_and_line(tmp_path):
    cfg = write(tmp_path, b"model:\n  path: caf\xe9.tflite\n")  # Latin-1, as an old editor saves it
    assert_clean_2(edgepose("check", str(cfg)), "not UTF-8", "0xe9 at line 2, column 12", "save it as UTF-8")


@pytest.mark.parametrize("text, needle", [
    (b"model:\n  threads: 2\x00\n", "line 2"),  # NUL: a YAML reader error
    (b"\xef\xbb\xbfmodel:\n  threads: 2\n", None),  # a UTF-8 BOM is fine
    (b"a: 2001-13-45\n", "YAML cannot read"),  # a timestamp PyYAML cannot build: ValueError before
    (b"a: " + b"1" * 5000 + b"\n", "YAML cannot read"),  # past Python's int digit limit: ValueError before
    (b"a: !!python/object:os.system x\n", "constructor"),
    (b"a: !!int zz\n", "YAML cannot read"),
    (b"a: 1\n---\nb: 2\n", "single document"),
    (b"- 1\n- 2\n", "mapping of sections"),
], ids=["nul", "bom", "date", "bigint", "tag", "bad-int", "two-docs", "list"])
def test_odd_yaml_is_a_config_error(tmp_path, text, needle):
    cfg = write(tmp_path, text)
    if needle is None:
        assert load_config(cfg).model.threads == 2
    else:
        assert needle in config_error(cfg)


@pytest.mark.parametrize("section, key, value", [
    ("source", "read_timeout_s", ".inf"), ("source", "open_timeout_s", ".nan"), ("source", "fps", "-.inf"),
    ("source", "reconnect_max_s", "1.0e+300"), ("source", "fps", "1.0e-300"), ("pipeline", "stop_timeout_s", ".inf"),
    ("tracking", "iou_weight", ".inf"), ("smoothing", "beta", ".nan"), ("model", "keypoint_threshold", ".nan"),
    ("source", "controls", "{ExposureTime: .inf}"),
])
def test_non_finite_and_absurd_numbers_are_refused(tmp_path, section, key, value):
    msg = config_error(write(tmp_path, f"{section}:\n  {key}: {value}\n"))
    assert f"{section}.{key}" in msg and ("finite" in msg or "a day" in msg), msg


def test_mqtt_durations_are_bounded_too():
    for key, value in (("heartbeat_s", float("inf")), ("connect_timeout_s", 1e12), ("max_rate_hz", float("nan"))):
        with pytest.raises(ConfigError, match=f"outputs.0.{key}"):
            validate({"outputs": [{"type": "mqtt", key: value}]})


def sections() -> set[type]:
    """Every config section class reachable from Config, through unions, lists and dicts."""
    from edge.config import Config

    found: set[type] = set()
    todo: list = [Config]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, Strict):
            if t not in found:
                found.add(t)
                todo += [f.annotation for f in t.model_fields.values()]
        else:
            todo += list(typing.get_args(t))
    return found


def test_every_float_field_is_finite_unless_it_says_so():
    """The rule lives in the base: every section (and any new one) inherits it, none turns it off."""
    assert len(sections()) > 15
    assert all(s.model_config["allow_inf_nan"] is False for s in sections())


def test_run_with_an_infinite_timeout_is_exit_2_not_an_overflow(tmp_path, capsys, root_logger):
    cfg = write(tmp_path, "source:\n  type: device\n  path: /dev/video77\n  read_timeout_s: .inf\n")
    assert main(["run", str(cfg)]) == 2  # was OverflowError (exit 1) in int(read_timeout_s * 1000)
    assert "source.read_timeout_s: Input should be a finite number" in capsys.readouterr().err


# --- 5. duplicate keys --------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, first, second", [
    ("model:\n  path: a.tflite\nsource: {}\nmodel:\n  threads: 3\n", "'model'", "line 1", "line 4"),
    ("source:\n  fps: 5\n  path: x.mp4\n  fps: 6\n", "'fps'", "line 2", "line 4"),
    ("outputs:\n  - {type: jsonl, path: a, path: b}\n", "'path'", "line 2, column 19", "line 2, column 28"),
    ("analytics:\n  - type: zones\n    zones:\n      - name: a\n        name: b\n", "'name'", "line 4", "line 5"),
])
def test_duplicate_keys_name_the_key_and_both_lines(tmp_path, text, key, first, second, cli):
    code, _, err = cli("check", str(write(tmp_path, text)))
    assert code == 2 and f"the key {key} appears twice" in err and first in err and second in err, err


# --- 2. secrets ----------------------------------------------------------------------------------

SECRET_CONFIGS = {
    "misspelt-section": f"sources:\n  type: network\n  path: rtsp://admin:{SECRET}@10.0.0.5/stream\n",
    "inline-mqtt-password": f"outputs:\n  - type: mqtt\n    host: broker\n    username: edge\n    password: {SECRET}\n",
    "numeric-web-token": "outputs:\n  - type: web\n    token: 1234567\n",  # too short, and a number
    "token-in-a-bad-output": f"outputs:\n  - type: webb\n    token: {SECRET}\n",
    "misspelt-key": f"model:\n  passwd: {SECRET}\n",
    "unknown-nested": f"extras:\n  camera:\n    api_key: {SECRET}\n    client_secret: {SECRET}x\n",
    "lone-userinfo": f"source:\n  type: network\n  path: http://{SECRET}@cam/\n  fps: -1\nmodel: {{x: http://{SECRET}@cam}}\n",
    "query-token": f"sourcee:\n  path: http://cam/video?user=a&password={SECRET}\n",
    "secret-in-a-list": f"model:\n  providers: [{{url: 'rtsp://u:{SECRET}@h/'}}, 2]\n",
    "union-tag": f"outputs:\n  - type: rtsp://u:{SECRET}@h/\n",
}


@pytest.mark.parametrize("name", SECRET_CONFIGS)
def test_secrets_are_masked_in_errors_under_any_key(tmp_path, name, cli):
    code, out, err = cli("check", str(write(tmp_path, SECRET_CONFIGS[name])))
    assert code == 2 and "***" in err, err
    assert SECRET not in out + err and "1234567" not in err, err


def test_a_misspelt_section_is_masked_by_the_real_cli(tmp_path):
    err = assert_clean_2(edgepose("check", str(write(tmp_path, SECRET_CONFIGS["misspelt-section"]))),
                         "sources: unknown key", "rtsp://admin:***@10.0.0.5/stream")
    assert SECRET not in err


def test_misspelt_section_says_which_and_keeps_the_user_name(tmp_path):
    msg = config_error(write(tmp_path, SECRET_CONFIGS["misspelt-section"]))
    assert "sources: unknown key" in msg and "rtsp://admin:***@10.0.0.5/stream" in msg and SECRET not in msg


def test_an_inline_mqtt_password_says_where_a_password_goes(tmp_path):
    msg = config_error(write(tmp_path, SECRET_CONFIGS["inline-mqtt-password"]))
    assert "outputs.0.password: unknown key (value ***)" in msg and "password_file" in msg


@pytest.mark.parametrize("key, secret", [
    ("password", True), ("passwd", True), ("pwd", True), ("pasword", True), ("token", True), ("web_token", True),
    ("api-key", True), ("apikey", True), ("client_secret", True), ("Authorization", True), ("credentials", True),
    ("password_file", False), ("password_env", False), ("password_credential", False), ("key_file", False),
    ("keypoint_threshold", False), ("host", False), ("username", False), ("path", False), ("keepalive_s", False),
])
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


def test_the_only_config_field_named_like_a_secret_is_the_web_token():
    """A new secret field must be named like one (…password, …token, …secret, …key) so that it is masked."""
    assert {name for s in sections() for name in s.model_fields if is_secret_key(name)} == {"token"}


def test_mask_text_is_linear_on_hostile_strings():
    t0 = time.monotonic()
    for s in ("a." * 200_000 + "@", "a://b:" * 100_000 + "@", "a:" * 200_000 + "@", "password=" * 100_000):
        mask_text(s)
    assert time.monotonic() - t0 < 2
    assert mask_text(f"1rtsp://u:{SECRET}@h") == "1rtsp://u:***@h"


def test_check_output_masks_the_camera_password(tmp_path, cli):
    cfg = write(tmp_path, f"source:\n  type: network\n  path: rtsp://admin:{SECRET}@10.0.0.5/stream\n"
                          f"outputs:\n  - type: web\n    token: {SECRET}\n")
    code, out, err = cli("check", str(cfg))
    assert code == 0, err
    assert "rtsp://admin:***@10.0.0.5/stream" in out and SECRET not in out + err


def test_a_sighup_reload_logs_the_rejection_masked(tmp_path, movenet_tflite, walk_clip):
    cfg = write(tmp_path, f"source:\n  path: {walk_clip}\n  loop: true\nmodel:\n  path: {movenet_tflite}\n"
                          "outputs: []\n")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(cfg)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()

    def wait_for(needle: str) -> None:
        deadline = time.monotonic() + 60
        while not any(needle in x for x in lines) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert any(needle in x for x in lines), "".join(lines)

    try:
        wait_for("pipeline running")
        cfg.write_text(cfg.read_text() + "tracking:\n  min_hits: 2\n")  # a good reload still works
        proc.send_signal(signal.SIGHUP)
        wait_for("configuration reloaded")
        cfg.write_text(SECRET_CONFIGS["misspelt-section"] + SECRET_CONFIGS["inline-mqtt-password"])
        proc.send_signal(signal.SIGHUP)
        wait_for("reload rejected")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        reader.join(5)
    finally:
        proc.kill()
    err = "".join(lines)
    assert proc.returncode == 0 and "rtsp://admin:***@10.0.0.5" in err and "(value ***)" in err
    assert SECRET not in err


# --- 4. check refuses what run refuses before it starts --------------------------------------------

def _mqtt(extra: str) -> str:
    return f"outputs:\n  - type: mqtt\n    host: localhost\n{extra}"


RUN_REFUSES = {
    "ca-file": (_mqtt("    tls:\n      ca_file: /nonexistent/ca.pem\n"), "tls.ca_file: cannot load /nonexistent/ca.pem"),
    "cert-file": (_mqtt("    tls:\n      cert_file: /nonexistent/c.pem\n"), "tls.cert_file/key_file"),
    "password-file": (_mqtt("    username: edge\n    password_file: /nonexistent/pw\n"), "cannot read /nonexistent/pw"),
    "model": ("model:\n  path: /nonexistent/m.tflite\n", "model /nonexistent/m.tflite does not exist"),
    "garbage-model": ("model:\n  path: {garbage}\n", "garbage.tflite"),
    "source-file": ("source:\n  path: /nonexistent/clip.mp4\n", "/nonexistent/clip.mp4 does not exist"),
    "source-images": ("source:\n  type: images\n  path: /nonexistent/*.jpg\n", "no images found"),
}


def _refused_config(tmp_path: Path, name: str) -> tuple[Path, str]:
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"garbage" * 500)
    text, needle = RUN_REFUSES[name]
    return write(tmp_path, text.format(garbage=garbage)), needle


@pytest.mark.parametrize("name", RUN_REFUSES)
def test_check_refuses_what_run_refuses(tmp_path, name, cli):
    cfg, needle = _refused_config(tmp_path, name)
    code, out, err = cli("check", str(cfg))
    assert code == 2 and needle in err and "OK" not in out, err  # check said OK to all of these
    # run, on a camera that is not there: the config's files are refused (2) before the camera is opened (1)
    code, _, err = cli("run", str(cfg), "-q", *([] if name.startswith("source") else ["--source", "/dev/video77"]))
    assert code == 2 and needle in err, err


def test_check_and_run_agree_through_the_real_cli(tmp_path):
    cfg, needle = _refused_config(tmp_path, "ca-file")
    assert_clean_2(edgepose("check", str(cfg)), needle)
    assert_clean_2(edgepose("run", str(cfg), "-q", "--source", "/dev/video77"), needle)


def test_check_loads_the_model_and_names_its_family(tmp_path, movenet_tflite, cli):
    code, out, err = cli("check", str(write(tmp_path, f"model:\n  path: {movenet_tflite}\n")))
    assert code == 0, err
    assert "family movenet" in out and str(movenet_tflite) in out


def test_a_password_only_the_service_environment_holds_is_noted_not_failed(tmp_path, monkeypatch, cli):
    cfg = write(tmp_path, _mqtt("    username: edge\n    password_env: EDGEPOSE_TEST_NOT_SET\n  - type: mqtt\n"
                                "    username: edge\n    password_credential: mqtt_password\n"))
    monkeypatch.delenv("EDGEPOSE_TEST_NOT_SET", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code, out, err = cli("check", str(cfg))
    assert code == 0, err
    assert "note: outputs.0.password_env" in out and "note: outputs.1.password_credential" in out
    # inside the unit (its environment and credentials there), check reads them as run does
    (tmp_path / "creds").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    monkeypatch.setenv("EDGEPOSE_TEST_NOT_SET", SECRET)
    code, out, err = cli("check", str(cfg))
    assert code == 2 and "password_credential: cannot read" in err and SECRET not in out + err, err
    (tmp_path / "creds" / "mqtt_password").write_text(SECRET + "\n")
    code, out, err = cli("check", str(cfg))
    assert code == 0 and "note:" not in out and SECRET not in out + err, err


def test_the_documented_yaml_still_loads_the_same_with_pyyaml(tmp_path):
    text = (ROOT / "config.yaml").read_text()
    assert load_config(ROOT / "config.yaml").model_dump() == validate(yaml.safe_load(text)).model_dump()
