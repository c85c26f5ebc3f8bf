"""consul.d/ holds only what a real Consul agent accepts (consul-semantics 2.1)."""

import json
from pathlib import Path

from click.testing import CliRunner

from tests import REPO
from tuggle_agent.cli import main
from tuggle_agent.config import load_config
from tuggle_agent.watches.consul_config import render

COMMON = {"type", "datacenter", "token", "handler_type", "args", "handler", "http_handler_config"}
BY_TYPE = {"keyprefix": {"prefix", "stale"}, "key": {"key", "stale"}, "event": {"name"}}


def validate_watch(w: dict) -> None:
    """Consul's own rules for a watch in agent config."""
    assert "type" in w, "Watch type must be specified"
    assert w["type"] in BY_TYPE, f"Unsupported watch type: {w['type']}"
    unknown = set(w) - COMMON - BY_TYPE[w["type"]]
    assert not unknown, f"Invalid parameters: {unknown}"
    assert w.get("handler_type", "script") in ("script", "http")
    handlers = [k for k in ("args", "handler", "http_handler_config") if k in w]
    assert len(handlers) == 1, "Only one watch handler allowed / Must define a watch handler"
    if w.get("handler_type") == "http":
        hc = w["http_handler_config"]
        assert "path" in hc, "Requires 'path' to be set"
        assert set(hc) <= {"path", "method", "header", "timeout", "tls_skip_verify"}
    if "args" in w:
        assert isinstance(w["args"], list) and all(isinstance(a, str) for a in w["args"])
    if w["type"] == "keyprefix":
        assert isinstance(w.get("prefix"), str) and w["prefix"]
    if w["type"] == "key":
        assert isinstance(w.get("key"), str) and w["key"]
    if w["type"] == "event":
        assert isinstance(w.get("name", ""), str)


def test_shipped_consul_d_is_valid_and_current():
    data = json.loads((REPO / "consul.d/tuggle-agent-watches.json").read_text())
    assert set(data) == {"watches"}
    for w in data["watches"]:
        validate_watch(w)
    assert {(w["type"], w.get("key") or w.get("name")) for w in data["watches"]} == {
        ("key", "tuggle.changes"),
        ("event", "tuggle"),
    }
    assert data == render(load_config(None, env={}), "/etc/tuggle-agent/tuggle.yaml", "/usr/local/bin/tuggle-agent")


def test_install_watches_renders_for_the_node(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("namespace: deploy\nport: 9911\n")
    r = CliRunner().invoke(
        main, ["install-watches", "--consul-config-dir", str(tmp_path / "consul.d"), "--config", str(cfg)]
    )
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "consul.d/tuggle-agent-watches.json").read_text())
    for w in data["watches"]:
        validate_watch(w)
        assert w["args"][1:] == ["handle-event", "--config", str(cfg)]
        assert Path(w["args"][0]).is_absolute()
    assert {w.get("key") or w.get("name") for w in data["watches"]} == {"deploy.changes", "deploy"}


def test_keyprefix_mode_watches_the_whole_prefix(tmp_path):
    """kv_watch: keyprefix (clusters with Go tuggle nodes, which write no change-log)."""
    data = render(load_config(None, env={}, overrides={"kv_watch": "keyprefix", "namespace": "deploy"}), "/t.yaml")
    for w in data["watches"]:
        validate_watch(w)
    assert {(w["type"], w.get("prefix") or w.get("name")) for w in data["watches"]} == {
        ("keyprefix", "deploy/"),
        ("event", "deploy"),
    }


def test_http_handler_watches_are_valid(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("port: 9911\nbind: 127.0.0.1\n")
    r = CliRunner().invoke(
        main, ["install-watches", "--consul-config-dir", str(tmp_path / "d"), "--config", str(cfg), "--handler", "http"]
    )
    assert r.exit_code == 0, r.output
    for w in json.loads((tmp_path / "d/tuggle-agent-watches.json").read_text())["watches"]:
        validate_watch(w)
        assert w["http_handler_config"]["path"] == "http://127.0.0.1:9911/_tuggle/watch"
