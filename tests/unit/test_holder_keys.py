"""Holder and relay keys read back from Consul (consul/holders.py, consul/health.py): values
are untrusted, so anything that is not a held key with a `{"address", "port"}` value is
skipped; holders sort by RTT from per-node coordinates, read once per node."""

import base64
import json
import math

from tuggle_agent.consul.health import Coordinates, Holder
from tuggle_agent.consul.holders import (
    MAX_TXN_ERRORS,
    TXN_OPS,
    batches,
    holdings,
    location_value,
    lock_ops,
    parse_located,
    parse_location,
    txn_errors,
)

PREFIX = "tuggle.holders/a.bin/v1/"


def entry(node, value=None, session="s1", rank=10, prefix=PREFIX):
    value = location_value("10.0.0.1", 8900) if value is None else value
    return {"Key": prefix + node, "Value": value, "Session": session, "CreateIndex": rank}


def test_a_value_round_trips_and_bad_values_are_refused():
    assert parse_location(location_value("10.0.0.7", 8901)) == ("10.0.0.7", 8901)
    assert parse_location(b'{"address": "fe80::1%eth0", "port": 1}') == ("fe80::1%eth0", 1)
    for bad in (
        None,
        b"",
        b"node2",  # what relay entries held before they carried an address
        b"not json {",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"address": "10.0.0.1"}',
        b'{"address": "10.0.0.1", "port": "8900"}',  # a string is not a port
        b'{"address": "10.0.0.1", "port": 8900.5}',
        b'{"address": "10.0.0.1", "port": true}',
        b'{"address": "10.0.0.1", "port": 0}',
        b'{"address": "10.0.0.1", "port": 65536}',
        b'{"address": "", "port": 80}',
        b'{"address": "evil.example/x?y", "port": 80}',
        b'{"address": "a b", "port": 80}',
        b'{"address": 1, "port": 80}',
        json.dumps({"address": "a" * 254, "port": 80}).encode(),
        json.dumps({"address": "10.0.0.1", "port": 80, "pad": "x" * 600}).encode(),
    ):
        assert parse_location(bad) is None, bad


def test_only_held_well_formed_keys_of_the_prefix_count_earliest_first():
    entries = [
        entry("node3", rank=30),
        entry("node1", rank=10),
        entry("node2", rank=20),
        entry("unheld", session=""),
        entry("no-session", session=None),
        entry("bad-value", value=b'{"address": "10.0.0.1", "port": "80"}'),
        entry("nested/deeper"),
        entry("", rank=5),
        entry("other-version", prefix="tuggle.holders/a.bin/v2/"),
        entry("bad-rank", rank="7"),
        {"Key": 5},
        "not a dict",
        None,
    ]
    got = parse_located(entries, PREFIX)
    assert [(h.node, h.rank) for h in got] == [("node1", 10), ("node2", 20), ("node3", 30)]
    assert got[0].holder() == Holder("node1", "10.0.0.1", 8900)
    assert parse_located(None, PREFIX) == [] and parse_located({"Key": "x"}, PREFIX) == []


def test_holdings_group_valid_keys_by_object_version():
    root = "tuggle.holders/"
    entries = [
        entry("node1", prefix=root + "a.bin/v1/"),
        entry("node2", prefix=root + "a.bin/v1/"),
        entry("node1", prefix=root + "b.bin/v7/"),
        entry("node3", value=b"junk", prefix=root + "a.bin/v1/"),
        entry("node4", session="", prefix=root + "a.bin/v1/"),
        entry("x/node5", prefix=root + "a.bin/v1/"),
        {"Key": root + "a.bin"},
    ]
    assert holdings(entries, root) == {("a.bin", "v1"): {"node1", "node2"}, ("b.bin", "v7"): {"node1"}}
    assert holdings(None, root) == {}


class FakeCoordinates:
    """py-consul's coordinate.node, answering from a table; counts the reads."""

    def __init__(self, table):
        self.table = table
        self.reads = []

    def node(self, node):
        self.reads.append(node)
        coord = self.table.get(node)
        return "1", ([{"Node": node, "Coord": coord}] if coord is not None else None)


class FakeClient:
    def __init__(self, table):
        self.coordinate = FakeCoordinates(table)


def coord(x):
    return {"Vec": [x] + [0.0] * 7, "Height": 0.0, "Adjustment": 0.0, "Error": 1.5}


def test_holders_sort_by_rtt_and_each_coordinate_is_read_once():
    client = FakeClient({"me": coord(0.0), "near": coord(0.001), "far": coord(0.05), "weird": {"Vec": "x"}})
    coords = Coordinates(client)
    holders = [Holder("far", "h", 1), Holder("unknown", "h", 2), Holder("weird", "h", 3), Holder("near", "h", 4)]
    got = coords.nearest("me", holders)
    assert [h.node for h in got][:2] == ["near", "far"]
    assert got[0].rtt == 0.001 and math.isinf(got[2].rtt) and math.isinf(got[3].rtt)
    coords.nearest("me", holders)
    assert sorted(client.coordinate.reads) == ["far", "me", "near", "unknown", "weird"]  # cached after
    assert coords.nearest("me", []) == []


def test_a_node_name_is_quoted_in_the_coordinate_path():
    client = FakeClient({})
    Coordinates(client).of("../agent/self?x")
    assert client.coordinate.reads == ["..%2Fagent%2Fself%3Fx"]


def test_base64_values_are_decoded_by_py_consul_not_here():
    # py-consul hands kv.get values over decoded (bytes); a raw base64 string is not a value.
    raw = base64.b64encode(location_value("10.0.0.1", 80)).decode()
    assert parse_location(raw) is None


class FakeKV:
    def __init__(self):
        self.calls = []
        self.refuse = set()  # keys locked by another session

    def put(self, key, value, acquire=None):
        self.calls.append(("put", key, acquire))
        return key not in self.refuse

    def delete(self, key):
        self.calls.append(("delete", key))
        return True


class FakeHTTP:
    """`PUT /v1/txn` of lock ops as Consul answers it: all applied (recorded as the KV
    puts they amount to), or none and 409 naming the ops on keys locked by another session."""

    def __init__(self, kv):
        self.kv = kv
        self.txns = []

    def put(self, callback, path, data="", headers=None):
        assert path == "/v1/txn"
        ops = [op["KV"] for op in json.loads(data)]
        assert all(op["Verb"] == "lock" for op in ops) and len(ops) <= 64
        self.txns.append([op["Key"] for op in ops])
        failed = [
            {"OpIndex": i, "What": f'failed to lock key "{op["Key"]}", lock is already held'}
            for i, op in enumerate(ops)
            if op["Key"] in self.kv.refuse
        ]
        if failed:
            answer = type("R", (), {"code": 409, "body": json.dumps({"Results": None, "Errors": failed})})
        else:
            self.kv.calls += [("put", op["Key"], op["Session"]) for op in ops]
            answer = type("R", (), {"code": 200, "body": "{}"})
        return callback(answer)


class FakeSessions:
    def __init__(self, existing):
        self.existing = existing
        self.destroyed = []
        self.created = []

    def node(self, node):
        return "1", self.existing

    def destroy(self, sid):
        self.destroyed.append(sid)

    def create(self, **kwargs):
        self.created.append(kwargs)
        return "sid-new"


class FakeService:
    def __init__(self):
        self.registered = None

    def register(self, tags):
        self.registered = set(tags)


def index(existing=()):
    from tuggle_agent.consul.holders import HolderIndex
    from tuggle_agent.consul.keys import Keys

    client = type("C", (), {})()
    client.kv, client.session = FakeKV(), FakeSessions(list(existing))
    client.http, client.prepare_headers = FakeHTTP(client.kv), dict
    svc = FakeService()
    return HolderIndex(client, Keys("tuggle"), svc, "node1", "10.0.0.1", 8900), client, svc


def test_copies_are_written_once_a_session_exists_and_only_by_it():
    idx, c, svc = index(
        existing=[
            {"Name": "tuggle-agent holders (tuggle)", "ID": "sid-old"},  # a killed process's: its keys go
            {"Name": "tuggle-agent fetch", "ID": "sid-fetch"},
        ]
    )
    idx.advertise_only([("a.bin", "v1")])
    assert svc.registered == set()  # registered without tags by default
    idx.advertise("b.bin", "v2")
    assert c.kv.calls == [] and idx.advertised("b.bin", "v2") and not idx.advertising()
    idx._open_session()
    assert c.session.destroyed == ["sid-old"]
    [created] = c.session.created
    assert created["checks"] == ["serfHealth", "service:tuggle"] and created["behavior"] == "delete"
    assert sorted(c.kv.calls) == [
        ("put", "tuggle.holders/a.bin/v1/node1", "sid-new"),
        ("put", "tuggle.holders/b.bin/v2/node1", "sid-new"),
    ]
    assert c.http.txns == [["tuggle.holders/a.bin/v1/node1", "tuggle.holders/b.bin/v2/node1"]]  # one request
    assert idx.advertising()
    idx.advertise_all([("a.bin", "v1"), ("b.bin", "v2")])  # reconcile: nothing missing, nothing written
    assert len(c.kv.calls) == 2
    idx.withdraw("a.bin", "v1")
    idx.withdraw("a.bin", "v1")
    idx.withdraw("never.bin", "v1")
    assert c.kv.calls[2:] == [("delete", "tuggle.holders/a.bin/v1/node1")]


def test_a_key_locked_by_another_session_is_not_counted_as_written():
    idx, c, _ = index()
    c.kv.refuse.add("tuggle.holders/a.bin/v1/node1")
    idx._open_session()
    idx.advertise("a.bin", "v1")
    assert not idx.advertising()
    c.kv.refuse.clear()
    idx.advertise_all([("a.bin", "v1")])  # the next reconcile writes it
    assert idx.advertising()


def test_a_batch_with_a_locked_key_is_written_key_by_key_and_only_the_written_count():
    idx, c, _ = index()
    copies = [(f"o{i:03d}.bin", "v1") for i in range(100)]
    locked = "tuggle.holders/o070.bin/v1/node1"
    c.kv.refuse.add(locked)
    idx.advertise_only(copies)
    idx._open_session()
    assert [len(t) for t in c.http.txns] == [64, 36]  # the second one is rolled back...
    singles = [k for op, k, *_ in c.kv.calls if op == "put"][64:]
    assert singles == [f"tuggle.holders/o{i:03d}.bin/v1/node1" for i in range(64, 100)]  # ...and done one by one
    assert idx._written == set(copies) - {("o070.bin", "v1")} and not idx.advertising()
    c.kv.refuse.clear()
    c.http.txns.clear()
    idx.advertise_all(copies)  # the next reconcile: only the missing key, as one plain put
    assert c.http.txns == [] and c.kv.calls[-1] == ("put", locked, "sid-new") and idx.advertising()


def test_many_unknown_holders_cost_one_read_of_every_coordinate():
    table = {f"n{i}": coord(i / 1000) for i in range(40)} | {"me": coord(0.0)}
    client = FakeClient(table)
    client.coordinate.nodes = lambda: (
        client.coordinate.reads.append("*all*") or ("1", [{"Node": n, "Coord": c} for n, c in table.items()])
    )
    holders = [Holder(f"n{i}", "h", 1) for i in reversed(range(40))]
    got = Coordinates(client).nearest("me", holders)
    assert client.coordinate.reads == ["*all*"]
    assert [h.node for h in got][:3] == ["n0", "n1", "n2"]


def test_holder_keys_are_written_in_transactions_of_at_most_64_lock_ops():
    copies = [(f"o{i}.bin", "v1") for i in range(130)]
    got = batches(copies)
    assert [len(b) for b in got] == [TXN_OPS, TXN_OPS, 2] and TXN_OPS == 64
    assert [c for b in got for c in b] == copies  # each copy once, in order
    assert batches([]) == []
    ops = lock_ops(["tuggle.holders/a.bin/v1/node1"], location_value("10.0.0.1", 8900), "sid-1")
    assert ops == [
        {
            "KV": {
                "Verb": "lock",
                "Key": "tuggle.holders/a.bin/v1/node1",
                "Value": base64.b64encode(b'{"address":"10.0.0.1","port":8900}').decode(),
                "Session": "sid-1",
            }
        }
    ]


def test_a_rolled_back_transaction_names_its_failed_ops_and_junk_is_skipped():
    body = json.dumps(
        {
            "Results": None,
            "Errors": [
                {"OpIndex": 3, "What": 'failed to lock key "k", lock is already held'},
                {"OpIndex": -1, "What": "negative"},
                {"OpIndex": True, "What": "a bool is not an index"},
                {"OpIndex": 4},
                "junk",
                {"OpIndex": 5, "What": "x" * 10_000},
            ],
        }
    ).encode()
    assert txn_errors(body) == [(3, 'failed to lock key "k", lock is already held'), (5, "x" * 200)]
    for bad in (b"", b"not json", b"\xff", b"[]", b'{"Errors": 3}', None, b'{"Errors": null}'):
        assert txn_errors(bad) == []
    many = json.dumps({"Errors": [{"OpIndex": i, "What": "w"} for i in range(100)]})
    assert len(txn_errors(many)) == MAX_TXN_ERRORS
