"""Configuration: every documented key loads, and bad values name the key and the form."""

import pytest
import yaml

from tests import REPO
from tuggle_agent.config import SETTINGS, ConfigError, load_config
from tuggle_agent.units import parse_duration, parse_rate, parse_size


def test_shipped_config_documents_every_key_and_matches_defaults():
    data = yaml.safe_load((REPO / "config/tuggle.yaml").read_text())
    sections = ("consul", "cache")
    flat = {k: v for k, v in data.items() if k not in sections}
    for section in sections:
        flat.update({f"{section}.{k}": v for k, v in data[section].items()})
    assert set(flat) == {s.key for s in SETTINGS}
    shipped = load_config(REPO / "config/tuggle.yaml", env={})
    defaults = load_config(None, env={})
    for s in SETTINGS:
        key = s.key.replace(".", "_")
        if key in ("data_dir", "consul_address"):
            continue
        assert getattr(shipped, key) == getattr(defaults, key), key


def test_sizes_rates_durations():
    assert parse_size("50MB") == 50_000_000
    assert parse_size("1.5GiB") == 1610612736
    assert parse_rate("unlimited") is None
    assert parse_rate("8MiB/s") == 8 * 2**20
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    for bad in ("fast", "10 parsecs", "-3"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_duration("10 minutes")


@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("port: 99999\n", "port"),
        ("fetch_rate: quick\n", "fetch_rate"),
        ("fetch_timeout: soon\n", "fetch_timeout"),
        ("post_download_failure: shrug\n", "post_download_failure"),
        ("write_allow: [not-an-ip]\n", "write_allow"),
        ("hooks: {pre_download: [{command: []}]}\n", "hooks"),
        ("hooks: {on_coffee: []}\n", "hooks"),
        ("fetchrate: 5MB\n", "fetchrate"),
    ],
)
def test_bad_values_name_the_key(tmp_path, yaml_text, key):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=key):
        load_config(p, env={})


def test_precedence_file_env_flags(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("consul: {address: 10.0.0.1:8500}\nport: 9000\n")
    assert load_config(p, env={}).consul_address == "10.0.0.1:8500"
    cfg = load_config(p, env={"CONSUL_HTTP_ADDR": "10.0.0.2:8500", "CONSUL_HTTP_TOKEN": "t"})
    assert (cfg.consul_address, cfg.consul_token) == ("10.0.0.2:8500", "t")
    assert load_config(p, {"consul.address": "x:1", "port": 8901}, env={"CONSUL_HTTP_ADDR": "y:2"}).port == 8901


def test_write_allow_default_is_loopback_only():
    cfg = load_config(None, env={})
    assert cfg.allows_write_from("127.0.0.1") and cfg.allows_write_from("::1")
    assert not cfg.allows_write_from("10.1.2.3")
