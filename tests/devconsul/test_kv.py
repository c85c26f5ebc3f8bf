"""KV store: CRUD semantics, indexes and blocking queries, via py-consul and raw HTTP."""

from __future__ import annotations

import base64
import time

import consul
import pytest
import requests

from .helpers import Blocked


def test_put_get_delete_roundtrip_with_base64_values(c, base_url):
    assert c.kv.get("a/b") == (c.kv.get("a/b")[0], None)
    assert c.kv.put("a/b", b"\x00\xffbin") is True
    index, entry = c.kv.get("a/b")
    assert entry["Value"] == b"\x00\xffbin"
    assert entry["Flags"] == 0 and entry["LockIndex"] == 0
    assert int(index) == entry["ModifyIndex"] == entry["CreateIndex"]
    raw = requests.get(f"{base_url}/v1/kv/a/b").json()
    assert raw == [
        {"LockIndex": 0, "Key": "a/b", "Flags": 0, "Value": base64.b64encode(b"\x00\xffbin").decode(),
         "CreateIndex": entry["CreateIndex"], "ModifyIndex": entry["ModifyIndex"]}
    ]  # fmt: skip
    assert c.kv.delete("a/b") is True
    assert c.kv.get("a/b")[1] is None
    assert c.kv.delete("never/existed") is True


def test_empty_value_is_null_and_session_omitted_when_unlocked(c, base_url):
    c.kv.put("empty", b"")
    body = requests.get(f"{base_url}/v1/kv/empty").json()[0]
    assert body["Value"] is None
    assert "Session" not in body


def test_missing_key_is_404_with_index_headers(c, base_url):
    c.kv.put("x", "1")
    resp = requests.get(f"{base_url}/v1/kv/nope")
    assert resp.status_code == 404
    assert resp.content == b""
    assert int(resp.headers["X-Consul-Index"]) >= 1
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    assert resp.headers["X-Consul-LastContact"] == "0"


def test_index_is_never_zero_on_fresh_cluster(make_cluster):
    cluster = make_cluster(nodes=1)
    resp = requests.get(f"http://{cluster.node('node1').http_addr}/v1/kv/anything?recurse")
    assert resp.status_code == 404
    assert int(resp.headers["X-Consul-Index"]) >= 1


def test_flags_reset_to_zero_when_absent(c):
    c.kv.put("f", "v", flags=42)
    assert c.kv.get("f")[1]["Flags"] == 42
    c.kv.put("f", "v")
    assert c.kv.get("f")[1]["Flags"] == 0


def test_cas_create_only_and_modify_index_match(c):
    assert c.kv.put("k", "1", cas=5) is False
    assert c.kv.put("k", "1", cas=0) is True
    assert c.kv.put("k", "2", cas=0) is False
    entry = c.kv.get("k")[1]
    assert c.kv.put("k", "2", cas=entry["ModifyIndex"] - 1) is False
    assert c.kv.put("k", "2", cas=entry["ModifyIndex"]) is True
    assert c.kv.get("k")[1]["Value"] == b"2"


def test_delete_cas_and_recurse(c):
    c.kv.put("d/1", "1")
    c.kv.put("d/2", "2")
    c.kv.put("dx", "3")
    entry = c.kv.get("d/1")[1]
    assert c.kv.delete("d/1", cas=entry["ModifyIndex"] + 100) is False
    assert c.kv.delete("d/1", cas=0) is False
    assert c.kv.delete("d/1", cas=entry["ModifyIndex"]) is True
    assert c.kv.delete("gone", cas=7) is True  # the state store answers true for a missing key
    assert c.kv.delete("d/", recurse=True) is True
    assert c.kv.get("d/", recurse=True)[1] is None
    assert c.kv.get("dx")[1]["Value"] == b"3"


def test_recurse_is_lexicographic_plain_prefix(c):
    for key in ("p/b", "p/a", "pa", "p/a/x", "q"):
        c.kv.put(key, key)
    _, entries = c.kv.get("p", recurse=True)
    assert [e["Key"] for e in entries] == ["p/a", "p/a/x", "p/b", "pa"]


def test_keys_with_separator(c, base_url):
    c.kv.put("bar", "4")
    c.kv.put("base/foo", "1")
    c.kv.put("base/base/foo", "5")
    assert c.kv.get("base/", keys=True, separator="/")[1] == ["base/base/", "base/foo"]
    assert c.kv.get("", keys=True)[1] == ["bar", "base/base/foo", "base/foo"]
    assert requests.get(f"{base_url}/v1/kv/zzz/?keys").status_code == 404
    c.kv.delete("", recurse=True)
    resp = requests.get(f"{base_url}/v1/kv/?keys")
    assert (resp.status_code, resp.json()) == (200, [])


def test_raw_returns_bytes_with_safety_headers(c, base_url):
    c.kv.put("raw", b"<b>hi</b>")
    resp = requests.get(f"{base_url}/v1/kv/raw?raw")
    assert resp.content == b"<b>hi</b>"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == "sandbox"


def test_bad_requests(c, base_url):
    assert requests.get(f"{base_url}/v1/kv/").status_code == 400  # Missing key name
    resp = requests.put(f"{base_url}/v1/kv/k?cas=0&acquire=x")
    assert resp.status_code == 400 and resp.text.startswith("Conflicting flags: ")
    assert requests.delete(f"{base_url}/v1/kv/k?recurse&cas=1").status_code == 400
    resp = requests.put(f"{base_url}/v1/kv/big", data=b"x" * (512 * 1024 + 1))
    assert resp.status_code == 413 and "too large" in resp.text
    assert requests.put(f"{base_url}/v1/kv/ok", data=b"x" * (512 * 1024)).json() is True
    assert requests.get(f"{base_url}/v1/kv/k?index=abc").status_code == 400
    assert requests.get(f"{base_url}/v1/kv/k?index=1&wait=soon").text == "Invalid wait time"
    assert requests.get(f"{base_url}/v1/kv/k?stale&consistent").status_code == 400
    assert requests.put(f"{base_url}/v1/kv/a/%2E%2E/b").status_code == 400  # path traversal
    resp = requests.put(f"{base_url}/v1/kv/%2Fslash")
    assert resp.status_code == 400
    assert requests.put(f"{base_url}/v1/kv/k?flags=notanumber").status_code == 500


def test_unknown_datacenter_is_500(c):
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        c.kv.get("x", dc="dc2")


def test_identical_write_keeps_modify_index(c):
    c.kv.put("same", "v", flags=1)
    first = c.kv.get("same")[1]["ModifyIndex"]
    c.kv.put("same", "v", flags=1)
    assert c.kv.get("same")[1]["ModifyIndex"] == first
    c.kv.put("same", "v", flags=2)
    assert c.kv.get("same")[1]["ModifyIndex"] > first


def test_one_index_across_nodes(dev_cluster):
    c1, c2 = dev_cluster.consul("node1"), dev_cluster.consul("node2")
    c1.kv.put("shared", "1")
    index1 = int(c1.kv.get("shared")[0])
    c2.kv.put("other", "2")
    assert int(c1.kv.get("other")[0]) == index1 + 1
    assert c2.kv.get("shared")[1]["Value"] == b"1"


def test_blocking_get_returns_promptly_after_write_and_not_before(dev_cluster, c):
    c.kv.put("watched", "1")
    index, _ = c.kv.get("watched")
    call = Blocked(dev_cluster, lambda: c.kv.get("watched", index=index, wait="5s"))
    time.sleep(0.3)  # nothing to await: we check that it does NOT return
    assert not call.done
    written = time.monotonic()
    c.kv.put("watched", "2")
    new_index, entry = call.join()
    assert time.monotonic() - written < 0.1  # woke within 100 ms of the write
    assert entry["Value"] == b"2" and int(new_index) > int(index)


def test_single_key_block_ignores_other_keys_and_identical_writes(dev_cluster, c):
    c.kv.put("mine", "1")
    index, _ = c.kv.get("mine")
    call = Blocked(dev_cluster, lambda: c.kv.get("mine", index=index, wait="400ms"))
    c.kv.put("other", "x")
    c.kv.put("mine", "1")  # identical: no change
    returned_index, entry = call.join()
    assert returned_index == index and entry["Value"] == b"1"  # timed out unchanged
    assert call.elapsed >= 0.35


def test_prefix_block_wakes_on_delete_below_prefix(dev_cluster, c):
    c.kv.put("dir/a", "1")
    c.kv.put("dir/b", "2")
    index, _ = c.kv.get("dir/", recurse=True)
    call = Blocked(dev_cluster, lambda: c.kv.get("dir/", recurse=True, index=index, wait="5s"))
    c.kv.put("elsewhere", "x")
    time.sleep(0.1)
    assert not call.done
    c.kv.delete("dir/b")
    new_index, entries = call.join()
    assert [e["Key"] for e in entries] == ["dir/a"]
    assert int(new_index) > int(index)  # the tombstone raised the prefix index


def test_missing_key_keeps_blocking_until_it_appears(dev_cluster, c):
    c.kv.put("unrelated", "0")
    index, _ = c.kv.get("later")
    call = Blocked(dev_cluster, lambda: c.kv.get("later", index=index, wait="5s"))
    for i in range(3):
        c.kv.put("unrelated", str(i + 1))
    time.sleep(0.2)
    assert not call.done
    c.kv.put("later", "here")
    _, entry = call.join()
    assert entry["Value"] == b"here"


def test_blocking_wait_times_out_with_current_index(c):
    c.kv.put("quiet", "1")
    index, _ = c.kv.get("quiet")
    start = time.monotonic()
    assert c.kv.get("quiet", index=index, wait="300ms")[0] == index
    assert 0.25 < time.monotonic() - start < 2


def test_default_wait_comes_from_timings(make_cluster):
    from tuggle_agent.devconsul import Timings

    cluster = make_cluster(nodes=1, timings=Timings.fast(default_query_time=0.3))
    url = f"http://{cluster.node('node1').http_addr}/v1/kv/x"
    requests.put(url, data="1")
    index = requests.get(url).headers["X-Consul-Index"]
    start = time.monotonic()
    assert requests.get(url, params={"index": index}).status_code == 200
    assert 0.25 < time.monotonic() - start < 2
