"""Loading and validating `watches` from agent config dirs, as Consul does."""

from __future__ import annotations

import json

import pytest
import requests

from tuggle_agent.devconsul import ConfigError
from tuggle_agent.devconsul.config import load_watches, parse_watch

OK_ARGS = {"args": ["/bin/true"]}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({**OK_ARGS}, "Watch type must be specified"),
        ({"type": "bogus", **OK_ARGS}, "Unsupported watch type: bogus"),
        ({"type": "keyprefix", **OK_ARGS}, "Must specify a single prefix to watch"),
        ({"type": "key", **OK_ARGS}, "Must specify a single key to watch"),
        ({"type": "service", **OK_ARGS}, "Must specify a single service to watch"),
        ({"type": "checks", "service": "a", "state": "any", **OK_ARGS}, "Cannot specify service and state"),
        ({"type": "event", "handler_type": "exec", **OK_ARGS}, "Handler type 'exec' not recognized"),
        ({"type": "event", "args": ["a"], "handler": "b"}, "Only one watch handler allowed"),
        ({"type": "event"}, "Must define a watch handler"),
        ({"type": "event", "args": ["a", 1]}, "Watch args must be a list of strings"),
        ({"type": "event", "handler": ["a"]}, "Watch handler must be a string"),
        ({"type": "event", "stale": True, **OK_ARGS}, "Invalid parameters: [stale]"),
        (
            {"type": "keyprefix", "prefix": "p", "Prefix": "q", "extra": 1, **OK_ARGS},
            "Invalid parameters: [Prefix extra]",
        ),
        ({"type": "event", "handler_type": "http"}, "Handler type 'http' requires 'http_handler_config' to be set"),
        ({"type": "event", "handler_type": "http", "http_handler_config": {}}, "Requires 'path' to be set"),
        (
            {"type": "event", "handler_type": "http", "http_handler_config": {"path": "http://x"}, **OK_ARGS},
            "Only one watch handler allowed",
        ),
        ({"type": "connect_roots", **OK_ARGS}, "Watch type connect_roots is not allowed in agent config"),
        ({"type": "keyprefix", "prefix": 5, **OK_ARGS}, "Expecting prefix to be a string"),
        ({"type": "key", "key": "k", "stale": "yes", **OK_ARGS}, "Expecting stale to be a boolean"),
    ],
)
def test_invalid_watches(params, error):
    with pytest.raises(ConfigError) as exc:
        parse_watch(params, "test.json")
    assert str(exc.value) == error or error in str(exc.value)


def test_valid_watch_shapes():
    spec = parse_watch({"type": "keyprefix", "prefix": "dist/", "args": "/bin/hook", "stale": True}, "f")
    assert (spec.type, spec.query, spec.args, spec.handler_type) == (
        "keyprefix", {"stale": True, "prefix": "dist/"}, ["/bin/hook"], "script"
    )  # fmt: skip
    spec = parse_watch({"type": "event", "handler": "echo $CONSUL_INDEX"}, "f")
    assert spec.shell == "echo $CONSUL_INDEX" and spec.query == {"name": ""}
    spec = parse_watch(
        {"type": "event", "name": "e", "handler_type": "http",
         "http_handler_config": {"path": "http://h/x", "header": {"a": ["b"]}, "timeout": "3s", "unknown": 1}},
        "f",
    )  # fmt: skip
    assert (spec.http.method, spec.http.timeout, spec.http.header) == ("POST", 3.0, {"a": ["b"]})
    spec = parse_watch({"type": "checks", "args": ["x"]}, "f")
    assert spec.query["state"] == "any"


def test_files_are_read_in_name_order_and_lists_appended(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"watches": [{"type": "event", "name": "b", "args": ["x"]}]}))
    (tmp_path / "a.hcl").write_text(
        'node_name = "ignored"\nwatches = [{\n  type = "keyprefix"\n  prefix = "p/"\n  args = ["x", "y"]\n},'
        ' {\n  type = "event"\n  name = "a"\n  handler = "echo hi"\n}]\n'
    )
    (tmp_path / "notes.txt").write_text("not config")
    specs = load_watches([tmp_path])
    assert [s.describe() for s in specs] == ["keyprefix:p/", "event:a", "event:b"]
    assert specs[0].args == ["x", "y"] and specs[1].shell == "echo hi"


def test_hcl_block_syntax(tmp_path):
    (tmp_path / "w.hcl").write_text('watches {\n  type = "key"\n  key = "k"\n  args = ["x"]\n}\n')
    assert [s.describe() for s in load_watches([tmp_path])] == ["key:k"]


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("bad.json", "{nope", "invalid JSON"),
        ("bad.hcl", "watches = [{ type = }", "invalid HCL"),
        ("unknown.json", '{"watchez": []}', "invalid config key watchez"),
        ("w.json", '{"watches": [{"type": "event"}]}', "Failed to parse watch #1: Must define a watch handler"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, text, error):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_watches([tmp_path])
    assert str(tmp_path / name) in str(exc.value) and error in str(exc.value)


def test_single_file_and_missing_dir(tmp_path):
    file = tmp_path / "one.json"
    file.write_text(json.dumps({"watches": [{"type": "event", "args": ["x"]}]}))
    assert len(load_watches([file, tmp_path / "absent"])) == 1


def test_invalid_config_stops_cluster_start(tmp_path, make_cluster):
    (tmp_path / "w.json").write_text(json.dumps({"watches": [{"type": "keyprefix", "args": ["x"]}]}))
    with pytest.raises(ConfigError, match="Must specify a single prefix to watch"):
        make_cluster(nodes=1, config_dirs=[tmp_path])


def test_failed_reload_keeps_running_and_answers_500(tmp_path, make_cluster):
    cluster = make_cluster(nodes=1, config_dirs=[tmp_path])
    (tmp_path / "w.json").write_text('{"watches": [{"type": "nope", "args": ["x"]}]}')
    resp = requests.put(f"http://{cluster.node('node1').http_addr}/v1/agent/reload")
    assert resp.status_code == 500 and "Unsupported watch type: nope" in resp.text
