"""Config: the documented default file is valid, and every error names the key path and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.config import Config, load_config, override, validate
from edge.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_documented_config_equals_the_defaults():
    assert load_config(ROOT / "config.yaml") == Config()


def test_every_default_key_is_documented_in_config_yaml():
    text = (ROOT / "config.yaml").read_text()
    for section, model in Config().model_dump().items():
        assert f"\n{section}:" in "\n" + text, section
        if isinstance(model, dict):
            for key in model:
                assert f"  {key}:" in text, f"{section}.{key} is not documented in config.yaml"


def test_every_section_key_is_in_the_readme_reference():
    """README's config table is what users read first: a key added to a section must show up there too."""
    rows = {line.split("|")[1].strip(" `"): line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| `")}
    for section, model in Config().model_dump().items():
        assert section in rows, f"README's config table has no row for {section}"
        if isinstance(model, dict):
            for key in model:
                assert f"`{key}`" in rows[section], f"README's config table misses {section}.{key}"


@pytest.mark.parametrize(
    "data, path, value",
    [
        ({"model": {"treads": 2}}, "model.treads", "2"),
        ({"model": {"threads": 0}}, "model.threads", "0"),
        ({"source": {"type": "webcam"}}, "source.type", "'webcam'"),
        ({"outputs": [{"type": "jsonl"}]}, "outputs.0.path", ""),
        ({"outputs": [{"type": "carrier-pigeon"}]}, "outputs.0", "carrier-pigeon"),
        ({"surce": {}}, "surce", ""),
    ],
)
def test_errors_name_key_path_and_value(data, path, value):
    with pytest.raises(ConfigError) as err:
        validate(data)
    msg = str(err.value)
    assert path in msg and value in msg


def test_yaml_syntax_error_gives_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  path: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_override_validates_and_applies():
    cfg = override(Config(), **{"model.threads": 4, "source.path": "x.mp4", "model.path": None})
    assert cfg.model.threads == 4 and cfg.source.path == "x.mp4" and cfg.model.path == "default"
    with pytest.raises(ConfigError, match="model.threads"):
        override(Config(), **{"model.threads": -1})


def test_config_round_trips_through_yaml(tmp_path):
    cfg = override(Config(), **{"outputs": [{"type": "jsonl", "path": "o.jsonl"}]})
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert load_config(p) == cfg


def test_shipped_kiosk_config_is_valid_and_draws_on_the_framebuffer():
    cfg = load_config(ROOT / "systemd" / "kiosk.yaml")
    assert [o.type for o in cfg.outputs][0] == "framebuffer"


def test_a_numeric_web_token_is_a_token_and_never_echoed(tmp_path):
    """YAML reads `token: 12345678` as an int; it must work, and a too-short one is refused masked."""
    from edge.config import load_config

    good = tmp_path / "good.yaml"
    good.write_text("outputs:\n  - type: web\n    token: 987654321\n")
    assert load_config(good).outputs[0].token == "987654321"
    bad = tmp_path / "bad.yaml"
    bad.write_text("outputs:\n  - type: web\n    token: 4321\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert "outputs.0.token" in str(exc.value) and "4321" not in str(exc.value)
