"""Watches from config dirs run real handler processes exactly like Consul's
agent: first run, change detection, serial handlers, reload, errors."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .helpers import Recorder, wait_until, write_config


def test_keyprefix_watch_sends_go_json_and_refires_on_reload(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "keyprefix", "prefix": "dist/", "args": rec.args()})
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    c = cluster.consul("node1")
    payload, index = rec.wait(1)[0]
    assert payload == b"null\n"  # fires on start, even with nothing there
    assert index >= 1
    c.kv.put("dist/a&b<c>", b"v", flags=3)
    payload, index = rec.wait(2)[1]
    modify = c.kv.get("dist/a&b<c>")[1]["ModifyIndex"]
    assert payload == (
        b'[{"Key":"dist/a\\u0026b\\u003cc\\u003e","CreateIndex":%d,"ModifyIndex":%d,'
        b'"LockIndex":0,"Flags":3,"Value":"dg==","Session":""}]\n' % (modify, modify)
    )
    assert index == modify
    c.kv.put("elsewhere", "x")
    c.kv.put("dist/a&b<c>", b"v", flags=3)  # identical write: no new index
    time.sleep(0.3)  # nothing may happen; there is no event to await
    assert len(rec.calls()) == 2
    cluster.reload("node1")
    assert rec.wait(3)[2] == (payload, index)  # reload re-fires with the same data


def test_handler_runs_serially_and_changes_coalesce(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "keyprefix", "prefix": "q/", "args": rec.args(sleep=0.4)})
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    c = cluster.consul("node1")
    rec.wait(1)
    c.kv.put("q/a", "1")
    wait_until(lambda: (rec.dir / "1.index").exists())  # second call is running (sleeping)
    c.kv.put("q/tmp", "x")
    c.kv.delete("q/tmp")  # index moves, data ends up the same as the running call's
    time.sleep(0.8)  # the handler finishes; no further call may follow
    assert [json.loads(p) and [e["Key"] for e in json.loads(p)] for p, _ in rec.calls()] == [None, ["q/a"]]
    for i in range(5):
        c.kv.put(f"q/k{i}", str(i))
    calls = rec.wait(3)
    wait_until(lambda: [e["Key"] for e in json.loads(rec.calls()[-1][0])] == ["q/a"] + [f"q/k{i}" for i in range(5)])
    assert len(rec.calls()) <= 5  # five writes while busy collapse into fewer calls
    assert calls[2][1] > calls[1][1]


def test_event_watch_prunes_then_redelivers_whole_buffer(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "event", "name": "deploy", "args": rec.args()})
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    c = cluster.consul("node1")
    assert rec.wait(1)[0][0] == b"[]\n"
    first = c.event.fire("deploy", "one")
    c.event.fire("other", "ignored")
    calls = rec.wait(2)
    events = json.loads(calls[1][0])
    assert [e["ID"] for e in events] == [first["ID"]]
    assert list(events[0]) == ["ID", "Name", "Payload", "NodeFilter", "ServiceFilter", "TagFilter", "Version", "LTime"]
    assert events[0]["Payload"] == "b25l" and events[0]["LTime"] >= 1
    from tuggle_agent.devconsul.codec import uuid_to_uint64

    assert calls[1][1] == uuid_to_uint64(first["ID"])
    second = c.event.fire("deploy", "two")
    assert [e["ID"] for e in json.loads(rec.wait(3)[2][0])] == [second["ID"]]  # only the new one
    cluster.reload("node1")
    replay = json.loads(rec.wait(4)[3][0])
    assert [e["ID"] for e in replay] == [first["ID"], second["ID"]]  # everything again


def test_query_errors_back_off_and_refire_with_full_data(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    write_config(tmp_path / "node1", {"type": "event", "name": "e", "args": rec.args()})
    cluster = make_cluster(nodes=2, config_dirs=[tmp_path / "{node}"])  # node2 has no config dir
    rec.wait(1)
    wait_until(cluster.store.waiting)  # the watch's blocking query is parked
    node1 = cluster.node("node1")
    node1.inject_errors(2)  # the watch's next two queries fail
    cluster.consul("node2").event.fire("e", "x")  # wakes the parked query; the next ones fail
    calls = rec.wait(2)
    started = time.monotonic()
    calls = rec.wait(3, timeout=5)
    # errors back off base*n^2 = 0.2s + 0.8s, then a first-run-like call repeats the data
    assert time.monotonic() - started >= 0.9
    assert calls[2][0] == calls[1][0]


def test_exit_status_is_only_logged(tmp_path, make_cluster):
    rec = Recorder(tmp_path)
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "flag", "args": rec.args(exit_code=3)})
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    rec.wait(1)
    cluster.consul("node1").kv.put("flag", "on")
    assert json.loads(rec.wait(2)[1][0])["Value"] == "b24="


def test_legacy_shell_handler_gets_agent_environment(tmp_path, make_cluster):
    out = tmp_path / "out"
    out.mkdir()
    handler = 'cat > "$OUT/stdin.json"; echo "$CONSUL_INDEX $EXTRA" > "$OUT/env.txt"'
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "k", "handler": handler})
    make_cluster(nodes=1, config_dirs=[cfg], env={"OUT": str(out), "EXTRA": "from-env"})
    wait_until(lambda: (out / "env.txt").exists() and (out / "env.txt").read_text().strip())
    assert (out / "stdin.json").read_bytes() == b"null\n"
    index, extra = (out / "env.txt").read_text().split()
    assert int(index) >= 1 and extra == "from-env"


def test_http_handler_posts_the_payload(tmp_path, make_cluster):
    received: list[tuple[str, dict, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - stdlib naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.command, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = {"path": f"http://127.0.0.1:{server.server_port}/hook", "method": "PUT", "header": {"X-Team": ["ops"]}}
        cfg = write_config(
            tmp_path / "cfg",
            {"type": "keyprefix", "prefix": "h/", "handler_type": "http", "http_handler_config": config},
        )
        cluster = make_cluster(nodes=1, config_dirs=[cfg])
        wait_until(lambda: received)
        cluster.consul("node1").kv.put("h/x", "1")
        wait_until(lambda: len(received) >= 2)
    finally:
        server.shutdown()
        server.server_close()
    method, headers, body = received[1]
    assert method == "PUT" and headers["Content-Type"] == "application/json" and headers["X-Team"] == "ops"
    assert [e["Key"] for e in json.loads(body)] == ["h/x"] and body.endswith(b"\n")
    assert int(headers["X-Consul-Index"]) == json.loads(body)[0]["ModifyIndex"]


def test_watches_follow_their_node(tmp_path, make_cluster):
    recs = {name: Recorder(tmp_path, name) for name in ("node1", "node2")}
    for name, rec in recs.items():
        write_config(tmp_path / "cfg" / name, {"type": "keyprefix", "prefix": "n/", "args": rec.args()})
    cluster = make_cluster(nodes=2, config_dirs=[tmp_path / "cfg" / "{node}"])
    for rec in recs.values():
        rec.wait(1)
    cluster.stop_node("node2")
    c1 = cluster.consul("node1")
    c1.kv.put("n/a", "1")
    recs["node1"].wait(2)
    time.sleep(0.2)
    assert len(recs["node2"].calls()) == 1  # a stopped node's watches are gone
    cluster.restart_node("node2")
    payload, _ = recs["node2"].wait(2)[1]
    assert [e["Key"] for e in json.loads(payload)] == ["n/a"]  # fires on start with current data


HANG = """#!/bin/sh
cat > /dev/null
trap '' TERM
sleep 30 &
echo "$$ $!" > "$1/pids"
wait
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(("how", "limit"), [("stop_node", 5.0), ("kill_node", 1.0)])
def test_stopping_a_node_ends_handler_process_groups(tmp_path, make_cluster, how, limit):
    script = tmp_path / "hang.sh"
    script.write_text(HANG)
    script.chmod(0o755)
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "k", "args": [str(script), str(tmp_path)]})
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    pids = [
        int(p) for p in wait_until(lambda: (tmp_path / "pids").exists() and (tmp_path / "pids").read_text().split())
    ]
    assert all(_alive(p) for p in pids)
    started = time.monotonic()
    getattr(cluster, how)("node1")
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=limit)
    assert time.monotonic() - started < limit


def test_cluster_stop_ends_handlers(tmp_path, make_cluster):
    script = tmp_path / "hang.sh"
    script.write_text(HANG.replace("trap '' TERM\n", ""))
    script.chmod(0o755)
    cfg = write_config(tmp_path / "cfg", {"type": "key", "key": "k", "args": [str(script), str(tmp_path)]})
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    pids = [
        int(p) for p in wait_until(lambda: (tmp_path / "pids").exists() and (tmp_path / "pids").read_text().split())
    ]
    cluster.stop()
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=3)
    assert os.path.exists(tmp_path / "pids")


def test_catalog_and_health_watch_types(tmp_path, make_cluster):
    recs = {kind: Recorder(tmp_path, kind) for kind in ("services", "service", "checks", "nodes")}
    cfg = write_config(
        tmp_path / "cfg",
        {"type": "services", "args": recs["services"].args()},
        {"type": "service", "service": "web", "passingonly": True, "args": recs["service"].args()},
        {"type": "checks", "state": "critical", "args": recs["checks"].args()},
        {"type": "nodes", "args": recs["nodes"].args()},
    )
    cluster = make_cluster(nodes=1, config_dirs=[cfg])
    assert json.loads(recs["services"].wait(1)[0][0]) == {"consul": []}
    assert recs["service"].wait(1)[0][0] == b"[]\n"
    assert recs["checks"].wait(1)[0][0] == b"[]\n"
    assert [n["Node"] for n in json.loads(recs["nodes"].wait(1)[0][0])] == ["node1"]
    c = cluster.consul("node1")
    c.agent.service.register("web", tags=["v1"], check={"TTL": "10s"})
    assert json.loads(recs["services"].wait(2)[1][0]) == {"consul": [], "web": ["v1"]}
    assert [ch["CheckID"] for ch in json.loads(recs["checks"].wait(2)[1][0])] == ["service:web"]
    c.agent.check.ttl_pass("service:web")
    entries = json.loads(recs["service"].wait(2)[1][0])
    assert [e["Service"]["ID"] for e in entries] == ["web"]
