"""Issue 8 §2: races on one name and planted metadata.  Concurrent PUTs are decided by the
KV check-and-set before any file moves; metadata read from KV is untrusted input."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tuggle_agent.harness import TuggleCluster

KiB = 1024


@pytest.fixture(scope="module")
def meta_cluster3(tmp_path_factory):
    with TuggleCluster(tmp_path_factory.mktemp("meta"), nodes=3, settings={"holder_wait": "3s"}) as c:
        yield c


def test_sixteen_concurrent_puts_of_one_name_make_exactly_one_winner(meta_cluster3, unique_name):
    n1, n2, _ = meta_cluster3.agents
    name = unique_name()
    bodies = [os.urandom(512 * KiB) for _ in range(16)]
    targets = [n1 if i % 2 else n2 for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: targets[i].put(name, bodies[i]), range(16)))
    codes = [r.status_code for r in answers]
    assert sorted(codes) == [201] + [409] * 15, codes
    winner = codes.index(201)
    body = bodies[winner]
    for a in meta_cluster3.agents:
        r = a.get(name)
        assert r.status_code == 200 and r.content == body, f"{a.name} does not serve the winner's bytes"
        assert a.local_file(name).read_bytes() == body
    assert [o["size"] for o in requests.get(n1.url + "/").json() if o["name"] == name] == [len(body)]
    for a in (n1, n2):  # nothing of the losers left behind
        assert [p for p in (a.data_dir / ".tmp").iterdir()] == []


def test_re_put_on_the_holder_is_409_and_leaves_its_file(meta_cluster3, unique_name):
    n1, n2, _ = meta_cluster3.agents
    name = unique_name()
    body = os.urandom(100 * KiB)
    assert n1.put(name, body).status_code == 201
    before = n1.local_file(name).stat()
    r = n1.put(name, os.urandom(100 * KiB))
    assert r.status_code == 409 and "exists" in r.text
    after = n1.local_file(name).stat()
    assert n1.local_file(name).read_bytes() == body
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the holder's file was replaced"
    assert "node1" in meta_cluster3.holders(name)
    assert n2.get(name).content == body


def good_meta(agent, name: str) -> dict:
    return next(o for o in requests.get(agent.url + "/").json() if o["name"] == name)


def test_planted_bad_metadata_is_skipped_reported_and_deletable(meta_cluster3, unique_name):
    n1, n2, n3 = meta_cluster3.agents
    kv = meta_cluster3.consul().kv
    a, b, good = unique_name(), unique_name(), unique_name()
    assert n1.put(b, b"object b").status_code == 201
    assert n1.put(good, b"good object").status_code == 201
    template = good_meta(n1, good)
    neg, badsync, junk = unique_name(), unique_name(), unique_name()
    planted = {
        neg: json.dumps({**template, "name": neg, "piece_size": -1}),
        badsync: json.dumps(
            {
                **template,
                "name": badsync,
                "sync": {"node": "(", "service": "", "tag": "", "requested_at": "2026-01-01T00:00:00Z"},
            }
        ),
        a: json.dumps(good_meta(n1, b)),  # key tuggle/a holds b's metadata
        junk: "this is { not json",
    }
    for n, value in planted.items():
        assert kv.put(f"tuggle/{n}", value)

    for node in meta_cluster3.agents:
        r = requests.get(node.url + "/", timeout=10)
        assert r.status_code == 200, r.text
        listed = {o["name"] for o in r.json()}
        assert {b, good} <= listed and not listed & set(planted), listed
        r = requests.post(node.url + "/_tuggle/reconcile", timeout=10)
        assert r.status_code == 200, r.text
        bad = {e["key"] for e in requests.get(node.url + "/_tuggle/status").json()["bad_entries"]}
        assert {f"tuggle/{n}" for n in planted} <= bad, bad
        assert "ignoring KV entry tuggle/" + neg in node.log()
    # GETs of planted names answer at once, without a fetch or a hang
    for n in planted:
        assert n2.get(n, timeout=10).status_code in (404, 400, 502, 503)
    # a serve started while they are there starts (a bad sync regex once made it exit)
    n3.restart()
    assert n3.get(good).content == b"good object"

    # DELETE /a removes the malformed key a, never object b
    assert requests.delete(f"{n2.url}/{a}", timeout=10).status_code == 200
    assert kv.get(f"tuggle/{a}")[1] is None
    assert kv.get(f"tuggle/{b}")[1] is not None
    assert n3.get(b).content == b"object b"
    assert "node1" in meta_cluster3.holders(b) and n1.local_file(b).read_bytes() == b"object b"
    # every malformed entry can be deleted through the API
    for n in (neg, badsync, junk):
        r = requests.delete(f"{n1.url}/{n}", timeout=10)
        assert r.status_code == 200, (n, r.status_code, r.text)
        assert kv.get(f"tuggle/{n}")[1] is None, n
    requests.post(n1.url + "/_tuggle/reconcile", timeout=10)
    bad = {e["key"] for e in requests.get(n1.url + "/_tuggle/status").json()["bad_entries"]}
    assert not bad & {f"tuggle/{n}" for n in planted}, bad
    assert {good, b} <= {o["name"] for o in requests.get(n1.url + "/").json()}
