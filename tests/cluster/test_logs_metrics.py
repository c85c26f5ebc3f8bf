"""Access log lines and metrics from real `serve` processes: node1 logs text, node2 JSON;
node2 runs a post_download hook that fails."""

import json
import os
import re
import time

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until


@pytest.fixture(scope="module")
def logged_cluster(tmp_path_factory):
    per_node = {
        "node2": {"log_format": "json", "hooks": {"post_download": [{"command": ["false"], "match": "hooked-*"}]}}
    }
    with TuggleCluster(tmp_path_factory.mktemp("logs"), nodes=2, per_node=per_node) as c:
        yield c


def _access_lines(agent) -> list[str]:
    return [line for line in agent.log().splitlines() if " tuggle_agent.access: " in line]


def _json_access(agent) -> list[dict]:
    records = [json.loads(line) for line in agent.log().splitlines() if line.startswith("{")]
    return [r for r in records if r["logger"] == "tuggle_agent.access"]


def test_one_access_line_per_request_with_bytes_duration_and_peer(logged_cluster, unique_name):
    n1, n2 = logged_cluster.agents
    name = unique_name()
    body = os.urandom(200_000)
    assert n1.put(name, body).status_code == 201
    assert n1.get(name).content == body  # a local file: sent with sendfile()
    assert requests.head(f"{n1.url}/{name}").status_code == 200
    assert n2.get(name).content == body  # fetched from node1: an internal request there

    def line(pattern: str) -> str:
        return wait_until(lambda: next((x for x in _access_lines(n1) if re.search(pattern, x)), None), 10, what=pattern)

    put = line(rf"PUT /{re.escape(name)} 201 ")
    assert re.search(r" 201 \d+B \d+\.\d{3}s 127\.0\.0\.1 client$", put), put
    assert line(rf"GET /{re.escape(name)} 200 200000B \d+\.\d{{3}}s 127\.0\.0\.1 client$")
    assert line(rf"HEAD /{re.escape(name)} 200 0B ")
    assert line(rf"GET /{re.escape(name)} 200 200000B \S+ 127\.0\.0\.1 internal$")

    def json_get():
        return next((r for r in _json_access(n2) if r["path"] == f"/{name}" and r["method"] == "GET"), None)

    rec = wait_until(json_get, 10, what="node2's JSON access line")
    assert rec["status"] == 200 and rec["bytes"] == len(body) and rec["client"] == "127.0.0.1"
    assert rec["internal"] is False and rec["route"] == "object" and rec["duration"] > 0
    assert rec["level"] == "INFO" and rec["time"]


def test_metrics_have_process_collectors_request_and_hook_counters(logged_cluster, unique_name):
    n1, n2 = logged_cluster.agents
    name = unique_name()
    hooked = "hooked-" + unique_name()
    assert n1.put(name, b"x" * 1000).status_code == 201
    assert n1.put(hooked, b"y" * 1000).status_code == 201
    assert requests.get(f"{n1.url}/no-such-{name}").status_code == 404
    assert n2.get(hooked).status_code == 200  # post_download_failure: keep

    def metric(agent, pattern: str) -> float | None:
        text = requests.get(agent.url + "/_tuggle/metrics", timeout=5).text
        m = re.search(rf"^{pattern} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info\\{.*\\}"):
        assert metric(n1, series) is not None, series
    assert metric(n1, r'tuggle_http_requests_total\{method="PUT",route="object",status="201"\}') >= 2
    assert metric(n1, r'tuggle_http_requests_total\{method="GET",route="object",status="404"\}') >= 1
    assert metric(n1, r'tuggle_http_requests_total\{method="GET",route="root",status="200"\}') >= 1  # /?ping
    text = requests.get(n1.url + "/_tuggle/metrics", timeout=5).text
    assert name not in text, "routes are labelled by name, never by path"
    wait_until(
        lambda: metric(n2, r'tuggle_hook_runs_total\{kind="post_download",result="failed"\}') == 1,
        10,
        what="the failed hook counted",
    )


@pytest.mark.parametrize("announced", [True, False])
def test_long_uploads_log_progress(logged_cluster, unique_name, announced):
    n1 = logged_cluster[0]
    name = unique_name()
    block, blocks = b"z" * 65536, 24

    class SlowBody:  # 2.4 s in all; progress_interval is 1s on test nodes
        def __iter__(self):
            for _ in range(blocks):
                time.sleep(0.1)
                yield block

        def __len__(self):  # requests then sends Content-Length instead of chunks
            return len(block) * blocks

    body = SlowBody() if announced else iter(SlowBody())
    assert n1.put(name, body).status_code == 201
    lines = [x for x in n1.log().splitlines() if f"receiving {name}: " in x]
    assert lines, "a long upload logs its progress"
    if announced:
        assert re.search(r"of 1\.5 MiB \(\d+%\), [\d.]+ (KiB|MiB)/s, ETA \d+s$", lines[0]), lines[0]
    else:
        assert re.search(r"[\d.]+ (KiB|MiB) so far \(size not announced\), [\d.]+ (KiB|MiB)/s$", lines[0]), lines[0]
