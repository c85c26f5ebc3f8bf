"""`PUT /v1/txn` (KV operations): atomic, one index, Consul's op limit, result
and error shapes, and per-op ACL checks -- through py-consul's txn.put and raw HTTP."""

from __future__ import annotations

import base64

import requests

from .test_acl import MASTER, make_token


def kv(verb: str, key: str, value: bytes | None = None, **more) -> dict:
    op = {"Verb": verb, "Key": key, **more}
    if value is not None:
        op["Value"] = base64.b64encode(value).decode()
    return {"KV": op}


def put(base_url: str, ops: list, token: str | None = None) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    return requests.put(f"{base_url}/v1/txn", json=ops, headers=headers, timeout=5)


def test_writes_apply_together_under_one_index(c):
    answer = c.txn.put([kv("set", "t/a", b"1"), kv("set", "t/b", b"2"), kv("get", "t/a")])
    assert answer["Errors"] is None
    a, b, got = (r["KV"] for r in answer["Results"])
    assert a["ModifyIndex"] == b["ModifyIndex"]  # one raft index for the whole transaction
    assert a["Value"] is None and b["Value"] is None  # writes answer without the value
    assert base64.b64decode(got["Value"]) == b"1"  # a get keeps it
    assert c.kv.get("t/b")[1]["Value"] == b"2"


def test_a_failed_op_rolls_everything_back(c, base_url):
    c.kv.put("t/old", b"keep")
    index_before = int(c.kv.get("t/old")[0])
    answer = put(
        base_url,
        [kv("set", "t/new", b"x"), kv("delete", "t/old"), kv("cas", "t/old", b"y", Index=1), kv("get", "t/none")],
    )
    assert answer.status_code == 409
    assert answer.json() == {
        "Results": None,
        "Errors": [
            {"OpIndex": 2, "What": 'failed to set key "t/old", index is stale'},
            {"OpIndex": 3, "What": 'key "t/none" doesn\'t exist'},
        ],
    }
    assert c.kv.get("t/new")[1] is None
    index, entry = c.kv.get("t/old")
    assert entry["Value"] == b"keep" and int(index) == index_before


def test_lock_acquires_with_a_session_and_fails_on_a_key_held_by_another(c, base_url):
    mine, theirs = c.session.create(name="mine"), c.session.create(name="theirs")
    assert c.kv.put("t/taken", b"them", acquire=theirs)
    answer = c.txn.put([kv("lock", "t/free", b"me", Session=mine)])
    assert answer["Results"][0]["KV"]["Session"] == mine
    assert answer["Results"][0]["KV"]["LockIndex"] == 1
    both = put(base_url, [kv("lock", "t/free2", b"me", Session=mine), kv("lock", "t/taken", b"me", Session=mine)])
    assert both.status_code == 409
    assert both.json()["Errors"] == [{"OpIndex": 1, "What": 'failed to lock key "t/taken", lock is already held'}]
    assert c.kv.get("t/free2")[1] is None  # rolled back with it
    assert c.kv.get("t/taken")[1]["Session"] == theirs
    bad = put(base_url, [kv("lock", "t/x", b"", Session="00000000-0000-0000-0000-00000000dead")])
    assert bad.status_code == 409 and "invalid session" in bad.json()["Errors"][0]["What"]


def test_checks_and_deletes(c):
    c.kv.put("t/k", b"v")
    index = c.kv.get("t/k")[1]["ModifyIndex"]
    ok = c.txn.put([kv("check-index", "t/k", Index=index), kv("delete-cas", "t/k", Index=index)])
    assert ok["Results"][0]["KV"]["Key"] == "t/k" and len(ok["Results"]) == 1  # deletes answer nothing
    assert c.kv.get("t/k")[1] is None
    c.kv.put("t/d/1", b"1")
    c.kv.put("t/d/2", b"2")
    tree = c.txn.put([kv("get-tree", "t/d/"), kv("delete-tree", "t/d/")])
    assert [r["KV"]["Key"] for r in tree["Results"]] == ["t/d/1", "t/d/2"]
    assert c.kv.get("t/d/", recurse=True)[1] is None


def test_op_limit_is_413_and_nothing_is_applied(base_url, c):
    ops = [kv("set", f"t/many/{i}", b"x") for i in range(129)]
    answer = put(base_url, ops)
    assert answer.status_code == 413
    assert answer.text == "Transaction contains too many operations (129 > 128)"
    assert c.kv.get("t/many/", recurse=True)[1] is None
    assert put(base_url, ops[:128]).status_code == 200


def test_non_kv_ops_and_bad_bodies_are_400(base_url):
    assert put(base_url, [{"Node": {"Verb": "get", "Node": {"Node": "node1"}}}]).status_code == 400
    assert put(base_url, [{"KV": {"Verb": "set", "Key": "k", "Value": "%%%"}}]).status_code == 400
    assert requests.put(f"{base_url}/v1/txn", data=b"{", timeout=5).status_code == 400


def test_each_op_is_checked_against_the_token(make_cluster):
    cluster = make_cluster(nodes=1, acl=True, acl_master_token=MASTER)
    master = cluster.consul("node1", token=MASTER)
    token = make_token(master, {"key_prefix": {"mine/": {"policy": "write"}, "open/": {"policy": "read"}}})
    master.kv.put("secret/k", b"s")
    base_url = f"http://{cluster.node('node1').http_addr}"
    denied = put(base_url, [kv("set", "mine/a", b"1"), kv("set", "secret/b", b"2")], token=token)
    assert denied.status_code == 409
    (error,) = denied.json()["Errors"]
    assert error["OpIndex"] == 1 and "lacks permission 'key:write' on \"secret/b\"" in error["What"]
    assert master.kv.get("mine/a")[1] is None
    # get is filtered on the way out, not refused; check-index needs key:read
    read = put(base_url, [kv("set", "mine/a", b"1"), kv("get", "secret/k")], token=token)
    assert read.status_code == 200 and [r["KV"]["Key"] for r in read.json()["Results"]] == ["mine/a"]
    check = put(base_url, [kv("check-index", "secret/k", Index=1)], token=token)
    assert check.status_code == 409 and "key:read" in check.json()["Errors"][0]["What"]
