"""The client commands (`put`, `get`, `ls`, `rm`, `status`, `wait`) as an operator runs
them: real `tuggle-agent` processes against a real 2-node cluster, or against a fake
agent (a real HTTP server on 127.0.0.1) where the test needs the agent to misbehave or
to answer `?status` documents that change over time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, agent_command, agent_env


def cli(*args: str, agent: str | None = None, cwd=None, env: dict | None = None, timeout: float = 60):
    argv = agent_command(*args, *(["--agent", agent] if agent else []))
    return subprocess.run(
        argv, env={**agent_env(), **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeAgent:
    """A real HTTP server; `respond(method, path, headers, body)` -> (status, headers, body).
    Every request is recorded as (method, path, headers, body bytes received, body bytes sent)."""

    def __init__(self, respond: Callable[[str, str, dict, bytes], tuple[int, dict, bytes]]):
        self.requests: list[tuple[str, str, dict, int, int]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, out = respond(self.command, self.path, dict(self.headers), body)
                fake.requests.append((self.command, self.path, dict(self.headers), len(body), len(out)))
                self.send_response(status)
                for k, v in {"Content-Length": str(len(out)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_PUT = do_DELETE = do_HEAD = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAgent:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def proxy_to(url: str) -> FakeAgent:
    """A recording proxy in front of a real agent: counts the body bytes each request got."""

    def forward(method, path, headers, received):
        fwd = {k: v for k, v in headers.items() if k.lower() in ("range", "if-range")}
        r = requests.request(method, url + path, headers=fwd, timeout=30)
        keep = ("Content-Range", "ETag", "Content-Type")
        return r.status_code, {k: r.headers[k] for k in keep if k in r.headers}, r.content

    return FakeAgent(forward)


def as_json(data) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()


@pytest.fixture(scope="module")
def cluster2(tmp_path_factory):
    with TuggleCluster(tmp_path_factory.mktemp("client"), nodes=2, watches="http") as c:
        yield c


# -- against the real cluster -----------------------------------------------------------------


def test_put_then_get_from_the_other_node(cluster2, tmp_path):
    n1, n2 = cluster2.agents
    body = os.urandom(700_000)
    (tmp_path / "app.tar.gz").write_bytes(body)
    r = cli("put", str(tmp_path / "app.tar.gz"), "putget.tar.gz", "--content-type", "application/gzip", agent=n1.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"stored putget.tar.gz: {len(body)} bytes, sha256 {sha(body)}"
    assert "put putget.tar.gz: 683.6 KiB of 683.6 KiB (100%)" in r.stderr  # plain progress: not a TTY
    assert n1.local_file("putget.tar.gz").read_bytes() == body
    assert requests.head(f"{n1.url}/putget.tar.gz", timeout=10).headers["Content-Type"] == "application/gzip"

    out = tmp_path / "fetched"
    r = cli("get", "putget.tar.gz", "-o", str(out), agent=n2.url)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == body
    assert not (tmp_path / "fetched.part").exists()
    assert f"sha256 {sha(body)} verified" in r.stdout
    assert "get putget.tar.gz:" in r.stderr and "ETA" in r.stderr

    # NAME defaults to the basename, the output to ./NAME; --json is one document, no progress
    (tmp_path / "second.bin").write_bytes(b"x" * 1000)
    r = cli("put", str(tmp_path / "second.bin"), "--json", agent=n1.url)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["name"] == "second.bin" and doc["size"] == 1000 and doc["sha256"] == sha(b"x" * 1000)
    assert r.stderr == ""
    work = tmp_path / "cwd"
    work.mkdir()
    r = cli("get", "second.bin", "--json", agent=n2.url, cwd=work)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sha256"] == sha(b"x" * 1000)
    assert (work / "second.bin").read_bytes() == b"x" * 1000

    # the name exists: refused (409), exit 1, nothing changed
    r = cli("put", str(tmp_path / "second.bin"), "putget.tar.gz", agent=n1.url)
    assert r.returncode == 1 and "409" in r.stderr, r.stderr
    assert n1.local_file("putget.tar.gz").read_bytes() == body


def test_put_sync_wait_then_status_on_the_real_cluster(cluster2, tmp_path):
    n1, n2 = cluster2.agents
    body = os.urandom(3_000_000)
    (tmp_path / "release.tar.gz").write_bytes(body)
    r = cli("put", str(tmp_path / "release.tar.gz"), "--sync", "--wait", "all", "--timeout", "60s", agent=n1.url)
    assert r.returncode == 0, r.stderr
    assert "release.tar.gz: 2/2 target nodes complete, target all (2) reached" in r.stdout
    assert n2.local_file("release.tar.gz").read_bytes() == body  # node2 prefetched it: the gate held until then

    r = cli("status", "release.tar.gz", "--json", agent=n2.url)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["sha256"], sorted(doc["targets"]), doc["complete_targets"]) == (sha(body), ["node1", "node2"], 2)
    r = cli("status", "release.tar.gz", agent=n2.url)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[4:]}
    assert rows["node1"][1:3] == ["complete", "yes"]
    assert rows["node2"][1:3] == ["complete", "yes"]

    r = cli("wait", "release.tar.gz", "--for", "3", "--timeout", "2s", "--json", agent=n1.url)  # 3 of 2 nodes: never
    assert r.returncode == 4, r.stderr
    assert json.loads(r.stdout)["needed"] == 3


def test_put_streams_with_content_length_and_sync_filters(tmp_path):
    body = os.urandom(300_000)
    seen = {}

    def respond(method, path, headers, received):
        seen.update(method=method, path=path, headers=headers, body=received)
        return 201, {"ETag": f'"{sha(received)}"'}, b"stored"

    (tmp_path / "f").write_bytes(body)
    with FakeAgent(respond) as fake:
        r = cli("put", str(tmp_path / "f"), "a.bin", "--sync", "--node", "^web", agent=fake.url)
    assert r.returncode == 0, r.stderr
    assert seen["body"] == body
    assert seen["headers"]["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in seen["headers"]
    assert seen["path"] == "/a.bin?sync=&node=%5Eweb"


def test_get_resumes_a_part_file(cluster2, tmp_path):
    """Only the missing half crosses the wire: counted by a recording proxy in front of the agent."""
    n1, n2 = cluster2.agents
    body = os.urandom(1_000_000)
    assert n1.put("resume.bin", body).status_code == 201
    half = 400_001

    out = tmp_path / "resume.bin"
    (tmp_path / "resume.bin.part").write_bytes(body[:half])
    with proxy_to(n2.url) as fake:
        r = cli("get", "resume.bin", "-o", str(out), "--json", agent=fake.url)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == body
    [(method, _, headers, _, sent)] = fake.requests
    assert method == "GET"
    assert headers["Range"] == f"bytes={half}-"
    assert sent == len(body) - half
    doc = json.loads(r.stdout)
    assert (doc["resumed_from"], doc["received"], doc["sha256"]) == (half, len(body) - half, sha(body))


def test_get_starts_over_when_the_resumed_part_does_not_verify(cluster2, tmp_path):
    """A .part left by an older version of the name: resumed, fails the check, downloaded again whole."""
    n1, n2 = cluster2.agents
    body = os.urandom(200_000)
    assert n1.put("stale.bin", body).status_code == 201
    (tmp_path / "stale.bin.part").write_bytes(os.urandom(80_000))
    with proxy_to(n2.url) as fake:
        r = cli("get", "stale.bin", agent=fake.url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the resumed bytes do not verify; downloading stale.bin from the start" in r.stderr
    assert (tmp_path / "stale.bin").read_bytes() == body
    assert [(h.get("Range"), sent) for _, _, h, _, sent in fake.requests] == [
        ("bytes=80000-", 120_000),
        (None, 200_000),
    ]


def test_get_restarts_from_zero_when_the_agent_ignores_range(tmp_path):
    body = os.urandom(50_000)
    with FakeAgent(lambda *a: (200, {"ETag": f'"{sha(body)}"'}, body)) as fake:
        (tmp_path / "x.bin.part").write_bytes(b"stale bytes of another version")
        r = cli("get", "x.bin", "-o", str(tmp_path / "x.bin"), agent=fake.url)
    assert r.returncode == 0, r.stderr
    assert fake.requests[0][2]["Range"] == "bytes=30-"
    assert (tmp_path / "x.bin").read_bytes() == body


def test_get_refuses_bytes_that_do_not_match_the_etag(tmp_path):
    good = os.urandom(100_000)
    bad = bytearray(good)
    bad[77_777] ^= 1
    with FakeAgent(lambda *a: (200, {"ETag": f'"{sha(good)}"'}, bytes(bad))) as fake:
        r = cli("get", "app.tar.gz", agent=fake.url, cwd=tmp_path)
        assert r.returncode == 5, r.stderr
        assert "checksum mismatch" in r.stderr and sha(good) in r.stderr
        assert list(tmp_path.iterdir()) == [], "neither the file nor its .part may be left"
        r = cli("get", "app.tar.gz", "--json", agent=fake.url, cwd=tmp_path)
    assert r.returncode == 5
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 5 and doc["expected_sha256"] == sha(good) and doc["sha256"] == sha(bytes(bad))


def test_ls_rm_and_not_found(cluster2, tmp_path):
    n1, n2 = cluster2.agents
    assert n1.put("listed.bin", b"y" * 2048).status_code == 201
    r = cli("ls", agent=n2.url)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "SIZE", "AGE"] and header.split()[-1] == "SHA256"
    assert any(row.split()[0] == "listed.bin" and sha(b"y" * 2048)[:12] in row for row in rows), r.stdout
    r = cli("ls", "--json", env={"TUGGLE_ADDR": n2.url})  # the environment names the agent
    assert r.returncode == 0, r.stderr
    assert "listed.bin" in [o["name"] for o in json.loads(r.stdout)]

    r = cli("rm", "listed.bin", "--json", agent=n2.url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["deleted"] is True
    r = cli("get", "listed.bin", agent=n1.url, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "not found" in r.stderr and list(tmp_path.iterdir()) == []
    r = cli("rm", "listed.bin", "--json", agent=n1.url)
    assert r.returncode == 3 and json.loads(r.stdout)["exit_code"] == 3
    assert "listed.bin" not in cli("ls", agent=n1.url).stdout


def test_ls_shows_holders_when_the_agent_counts_them():
    listing = [
        {"name": "b.bin", "size": 3 << 20, "created_at": "2026-11-27T05:05:57Z", "sha256": "cd" * 32, "holders": 3},
        {
            "name": "a.bin",
            "size": 10,
            "created_at": "bad",
            "sha256": "ab" * 32,
            "holders": 0,
            "no_passing_holder": True,
        },
    ]
    with FakeAgent(lambda *a: as_json(listing)) as fake:
        r = cli("ls", agent=fake.url)
    assert r.returncode == 0, r.stderr
    header, a, b = (line.split() for line in r.stdout.splitlines())
    assert header == ["NAME", "SIZE", "AGE", "HOLDERS", "SHA256"]
    assert a == ["a.bin", "10", "B", "?", "0", "(none", "passing)", "ab" * 6]
    assert b[:3] == ["b.bin", "3.0", "MiB"] and b[-2:] == ["3", "cd" * 6]


def test_exit_codes_for_usage_and_an_unreachable_agent(tmp_path):
    r = cli("wait", "a.bin", "--for", "150%")
    assert r.returncode == 2 and "all | N | P%" in r.stderr
    r = cli("put", str(tmp_path), "--node", "x")
    assert r.returncode == 2
    (tmp_path / "f").write_bytes(b"f")
    r = cli("put", str(tmp_path / "f"), "--node", "x")
    assert r.returncode == 2 and "--sync" in r.stderr
    with FakeAgent(lambda *a: (200, {}, b"")) as fake:
        dead = fake.url  # nothing listens there once the fake is shut down
    r = cli("ls", "--json", agent=dead)
    assert r.returncode == 1 and "could not reach the tuggle-agent" in json.loads(r.stdout)["error"]
    r = cli("status", "a.bin", env={"TUGGLE_ADDR": dead})
    assert r.returncode == 1 and dead in r.stderr


# -- status and wait against canned ?status documents -----------------------------------------


def node(name, state, passing=True, verified=0, rate=0.0, source="", detail=""):
    return {
        "node": name,
        "state": state,
        "passing": passing,
        "bytes_verified": verified,
        "rate": rate,
        "source": source,
        "detail": detail,
    }


def status_doc(nodes, targets=("n1", "n2", "n3"), failed=()):
    complete = [n["node"] for n in nodes if n["state"] == "complete"]
    return {
        "name": "app.tar.gz",
        "version": "v1",
        "size": 1000,
        "sha256": "ab" * 32,
        "created_at": "2026-11-27T05:05:57.977770Z",
        "sync": {"node": "", "service": "", "tag": "", "requested_at": "2026-11-27T05:05:57Z"},
        "nodes": nodes,
        "targets": list(targets),
        "complete": len(complete),
        "complete_targets": len(set(complete) & set(targets)),
        "failed": list(failed),
    }


BUILDER = node("builder", "complete", verified=1000)  # the uploader: a holder, not a sync target
ROLLOUT = [  # one stage per two ?status requests, then the last one for ever
    status_doc([BUILDER, node("n1", "complete", verified=1000), node("n2", "missing"), node("n3", "missing")]),
    status_doc([BUILDER, node("n1", "complete", verified=1000), node("n2", "fetching", verified=400, rate=2e6)]),
    status_doc([BUILDER, *(node(n, "complete", verified=1000) for n in ("n1", "n2")), node("n3", "fetching")]),
    status_doc([BUILDER, *(node(n, "complete", verified=1000) for n in ("n1", "n2", "n3"))]),
]
STUCK = status_doc(
    [
        node("n1", "complete", verified=1000),
        node("n2", "fetching", verified=300, rate=1e5, source="n1", detail="from n1"),
        node("n3", "hook_failed", verified=1000, detail="post_download exited 1"),
        node("n4", "down", passing=False, detail="serfHealth critical"),
    ],
    targets=("n1", "n2", "n3", "n4", "n5"),
    failed=("n3",),
)


def status_agent(stages):
    calls = []

    def respond(method, path, headers, received):
        if not path.startswith("/app.tar.gz?status"):
            return 404, {}, b"unknown object"
        calls.append(path)
        return as_json(stages[min((len(calls) - 1) // 2, len(stages) - 1)])

    return FakeAgent(respond)


def test_status_table_and_json():
    with status_agent([STUCK]) as fake:
        r = cli("status", "app.tar.gz", agent=fake.url)
        assert r.returncode == 0, r.stderr
        assert "complete: 1/5 targets" in r.stdout and "failed: n3" in r.stdout and "sync every node" in r.stdout
        rows = {line.split()[0]: line for line in r.stdout.splitlines()[4:]}
        assert rows["NODE"].split() == ["NODE", "STATE", "PASSING", "VERIFIED", "RATE", "SOURCE", "DETAIL"]
        assert rows["n3"].split()[:2] == ["n3", "hook_failed"] and rows["n3"].endswith("post_download exited 1")
        assert rows["n2"].split()[:5] == ["n2", "fetching", "yes", "300", "B"]
        assert rows["n4"].split()[:3] == ["n4", "down", "no"]
        r = cli("status", "app.tar.gz", "--json", agent=fake.url)
        assert json.loads(r.stdout) == STUCK
        r = cli("status", "other.bin", agent=fake.url)
        assert r.returncode == 3


def test_status_from_an_agent_without_status_support():
    with FakeAgent(lambda *a: (200, {"Content-Type": "application/octet-stream"}, b"\x1f\x8b raw bytes")) as fake:
        r = cli("status", "app.tar.gz", agent=fake.url)
    assert r.returncode == 1 and "not JSON" in r.stderr


def test_wait_until_the_rollout_reaches_its_target():
    with status_agent(ROLLOUT) as fake:
        started = time.monotonic()
        r = cli("wait", "app.tar.gz", "--for", "all", "--timeout", "30s", agent=fake.url)
        assert r.returncode == 0, r.stderr
        assert "3/3 target nodes complete, target all (3) reached" in r.stdout
        assert time.monotonic() - started >= 5, "reached only after 7 polls a second apart"
        # not a TTY: plain progress on stderr; bytes of the target nodes only (not the builder's)
        assert "wait app.tar.gz for all (3): 3/3 nodes (100%), 2.9 KiB of 2.9 KiB," in r.stderr, r.stderr
    with status_agent(ROLLOUT) as fake:
        r = cli("wait", "app.tar.gz", "--for", "60%", "--timeout", "30s", "--json", agent=fake.url)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert (doc["reached"], doc["needed"], doc["complete_targets"]) == (True, 2, 2)
        assert [n["node"] for n in doc["missing"]] == ["n3"]


def test_wait_times_out_naming_missing_and_failing_nodes():
    with status_agent([STUCK]) as fake:
        started = time.monotonic()
        r = cli("wait", "app.tar.gz", "--for", "all", "--timeout", "3s", agent=fake.url)
        assert r.returncode == 4, r.stderr
        assert 3 <= time.monotonic() - started < 15
        assert "complete on 1/5 target nodes; target all needs 5" in r.stderr
        assert "n3: hook_failed (post_download exited 1)" in r.stderr
        assert "n4: down (serfHealth critical)" in r.stderr
        assert "n2: fetching (from n1)" in r.stderr and "n5: missing (not reported)" in r.stderr
        r = cli("wait", "app.tar.gz", "--for", "2", "--timeout", "1s", "--json", agent=fake.url)
        assert r.returncode == 4
        doc = json.loads(r.stdout)
        assert doc["reached"] is False and doc["exit_code"] == 4
        assert [n["node"] for n in doc["failing"]] == ["n3", "n4"]
        assert [n["node"] for n in doc["missing"]] == ["n2", "n5"]
        r = cli("wait", "gone.bin", "--for", "all", "--timeout", "5s", agent=fake.url)
        assert r.returncode == 3


def test_put_with_wait(tmp_path):
    polls = []

    def respond(method, path, headers, received):
        if method == "PUT":
            return 201, {"ETag": f'"{sha(received)}"', "X-Tuggle-Object-Id": "abc"}, b"stored"
        polls.append(path)
        return as_json(ROLLOUT[min(len(polls) // 2, len(ROLLOUT) - 1)])

    (tmp_path / "app.tar.gz").write_bytes(b"z" * 5000)
    with FakeAgent(respond) as fake:
        r = cli("put", str(tmp_path / "app.tar.gz"), "--sync", "--wait", "all", "--timeout", "30s", agent=fake.url)
        assert r.returncode == 0, r.stderr
        assert "stored app.tar.gz: 5000 bytes" in r.stdout and "target all (3) reached" in r.stdout
        assert polls[0] == "/app.tar.gz?status="
        polls.clear()
        r = cli("put", str(tmp_path / "app.tar.gz"), "--wait", "all", "--timeout", "1s", "--json", agent=fake.url)
    assert r.returncode == 4, r.stderr
    doc = json.loads(r.stdout)
    assert doc["sha256"] == sha(b"z" * 5000) and doc["reached"] is False and doc["exit_code"] == 4
