"""Slow nodes slow only themselves: who skips whom in the relay chain, when a slow node
sinks behind faster ones, and when a fetch leaves a source that stays slow."""

import itertools
import math

from tuggle_agent.consul.relay import RelayPeer
from tuggle_agent.engine.switching import SourceMonitor, Speed, Upstream, choose_upstream, relay_verdict, skips
from tuggle_agent.front.graph import to_dot
from tuggle_agent.objects.edges import Edge

MiB = 2**20
FAST = Speed.from_config(8 * MiB, 8 * MiB)
SLOW = Speed.from_config(2 * MiB, 2 * MiB)  # fetch_rate = serve_rate = B/4
SERVE_SLOW = Speed.from_config(8 * MiB, 2 * MiB)  # takes at B, passes on at B/4
UNLIMITED = Speed.from_config(None, None)


def peer(node: str, rank: int, speed: Speed) -> RelayPeer:
    return RelayPeer(node, rank, speed.to_flags())


def test_speed_travels_in_the_relay_entry_flags():
    for s in (FAST, SLOW, SERVE_SLOW, UNLIMITED, Speed.from_config(None, 3 * MiB)):
        assert Speed.from_flags(s.to_flags()) == s
    assert UNLIMITED.to_flags() == 0 and Speed(math.inf, math.inf) == UNLIMITED
    assert Speed(8 * MiB, 2 * MiB) == SERVE_SLOW  # a node relays no faster than it receives
    assert Speed.from_config(MiB, 8 * MiB).relay == MiB
    assert Speed.from_flags(2**64 - 1).take > 0  # any uint64 from KV decodes to something usable


def test_a_fast_node_skips_a_slow_relay_and_not_the_other_way_round():
    assert skips(SLOW, FAST) and not skips(FAST, SLOW)
    assert skips(SERVE_SLOW, FAST)  # its fetch is fast, its upload is not
    assert skips(SLOW, SERVE_SLOW)  # it could take B: the B/4 node goes behind it
    assert skips(FAST, UNLIMITED) and not skips(UNLIMITED, FAST)


def test_equals_never_skip_each_other():
    for s in (FAST, SLOW, SERVE_SLOW, UNLIMITED):
        assert not skips(s, s)
    assert not skips(Speed.from_config(int(7.5 * MiB), None), FAST)  # a few percent is no reason


def test_skipping_is_antisymmetric_so_nodes_never_sink_behind_each_other_forever():
    rates = [None, MiB, 2 * MiB, 6 * MiB, 8 * MiB, 64 * MiB]
    speeds = [Speed.from_config(f, s) for f, s in itertools.product(rates, rates)]
    for a, b in itertools.product(speeds, speeds):
        assert not (skips(a, b) and skips(b, a)), (a, b)


def test_upstream_leaves_out_relays_too_slow_for_us():
    up = [peer("a", 1, FAST), peer("b", 2, FAST)]
    assert choose_upstream(up, 0, FAST) == Upstream(["a", "b"], False, [])  # uniform: fall back as before
    assert choose_upstream([*up, peer("c", 3, FAST)], 3, FAST).nodes == ["a", "b"]  # ranked before us only
    up = [peer("a", 1, FAST), peer("s", 2, SLOW), peer("v", 3, SERVE_SLOW)]
    assert choose_upstream(up, 0, SLOW) == Upstream(["a", "s", "v"], False, [])  # a slow node takes from anyone
    assert choose_upstream(up, 0, FAST, excluded={"a"}) == Upstream([], False, ["s", "v"])  # nudged to sink
    assert choose_upstream(up[1:], 0, FAST) == Upstream([], False, ["s", "v"])


def test_behind_a_node_about_to_sink_wait_for_the_predecessor_alone_and_nudge_it():
    # s (slow) ranks between a and us: it holds a's slot and is about to sink. Taking an
    # earlier holder's slot would strand that holder's own successor (a).
    up = [peer("p", 1, FAST), peer("a", 2, FAST), peer("s", 3, SLOW)]
    assert choose_upstream(up, 0, FAST) == Upstream(["a"], True, ["s"])
    assert choose_upstream(up, 0, FAST, excluded={"a"}) == Upstream(["p"], True, ["s"])
    # a node that sank belongs at the tail: behind the nearest node only
    assert choose_upstream(up[:2], 0, SLOW, sunk=True) == Upstream(["a"], True, [])
    assert choose_upstream(up[:2], 0, SLOW) == Upstream(["p", "a"], False, [])


def test_a_slow_node_sinks_when_a_faster_node_ranks_after_it():
    live = [peer("s", 10, SLOW), peer("f", 11, FAST)]
    assert relay_verdict(SLOW, 10, live, "node1") == "sink"
    assert relay_verdict(FAST, 11, live, "node1") is None
    # behind an equal or slower node nobody waits: no sinking (no churn in a uniform cluster)
    assert relay_verdict(FAST, 10, [peer("x", 10, FAST), peer("y", 11, FAST)], "node1") is None
    assert relay_verdict(SLOW, 10, [peer("s", 10, SLOW), peer("t", 11, SLOW)], "node1") is None
    # faster nodes ranked *before* it are no reason to move
    assert relay_verdict(SLOW, 12, [*live, peer("s2", 12, SLOW)], "f") is None


def test_a_fetch_leaves_a_source_that_sank_behind_it():
    live = [peer("t", 11, SLOW), peer("s", 12, SLOW)]  # s re-announced: ranks 12 now
    assert relay_verdict(SLOW, 11, live, "s") == "reranked"
    assert relay_verdict(SLOW, 11, live, "node1") is None  # a complete holder has no rank
    assert relay_verdict(SLOW, 11, [peer("t", 11, SLOW)], "s") is None  # s completed: a holder now


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def feed(m: SourceMonitor, clock: Clock, rate: float, seconds: float, step: float = 0.125) -> list[bool]:
    out = []
    for _ in range(round(seconds / step)):
        clock.t += step
        out.append(m.observe(int(rate * step)))
    return out


def test_monitor_asks_to_switch_only_after_patience_slow_windows():
    clock = Clock()
    m = SourceMonitor(take=8 * MiB, window=1.0, patience=2, clock=clock)
    assert not any(feed(m, clock, 8 * MiB, 5))  # at our own rate: never
    asks = feed(m, clock, 2 * MiB, 2.05)
    assert asks[-1] and not any(asks[:-1])  # the second full slow window, not before
    assert abs(m.last_rate - 2 * MiB) < 0.1 * MiB


def test_monitor_one_good_window_resets_and_noise_is_not_slow():
    clock = Clock()
    m = SourceMonitor(take=8 * MiB, window=1.0, patience=2, clock=clock)
    assert not any(feed(m, clock, 2 * MiB, 1.05) + feed(m, clock, 8 * MiB, 1.0) + feed(m, clock, 2 * MiB, 1.0))
    assert not any(feed(m, clock, 6.5 * MiB, 10))  # 0.81 × B: not "well below"


def test_monitor_after_a_refusal_waits_patience_windows_again():
    clock = Clock()
    m = SourceMonitor(take=8 * MiB, window=1.0, patience=2, clock=clock)
    assert feed(m, clock, MiB, 2.05)[-1]
    m.declined()
    asks = feed(m, clock, MiB, 2.0)
    assert asks[-1] and sum(asks) == 1


def test_unlimited_node_compares_with_the_best_rate_a_source_gave_this_fetch():
    clock = Clock()
    m = SourceMonitor(take=math.inf, window=1.0, patience=2, clock=clock)
    assert not any(feed(m, clock, 40 * MiB, 3))
    m.restart()  # a new source
    assert feed(m, clock, 5 * MiB, 2.05)[-1]
    fresh = SourceMonitor(take=math.inf, window=1.0, patience=2, clock=clock)
    assert not any(feed(fresh, clock, 5 * MiB, 5))  # nothing to compare with: never


def test_switch_edges_are_dashed_with_their_reason_and_planted_reasons_are_refused():
    e = Edge("node2", "node3", 1.0, 2.0, 1.0, "slow")
    assert Edge.from_json(e.to_json()) == e
    assert Edge.from_json(Edge("a", "b", 1.0, 2.0, 1.0).to_json()).left_because is None
    dot = to_dot("x", [e, Edge("node1", "node3", 1.0, 3.0, 2.0)])
    assert '"node2" -> "node3" [label="left: slow\\n1.00s' in dot and "style=dashed" in dot
    assert '"node1" -> "node3" [label="2.00s' in dot
    for bad in ('"x\\"];evil"', "7", '"' + "a" * 40 + '"', '"SLOW"'):
        raw = '{"from": "a", "to": "b", "start": 1, "end": 2, "elapsed": 1, "left_because": ' + bad + "}"
        assert Edge.from_json(raw) is None, bad


class FakeKV:
    def __init__(self, entries):
        self.entries = entries

    def get(self, key, recurse=False, index=None, wait=None):
        return "7", self.entries


class FakeConsul:
    def __init__(self, entries):
        self.kv = FakeKV(entries)


def test_relay_entries_from_kv_are_untrusted():
    from tuggle_agent.consul.health import Holder
    from tuggle_agent.consul.keys import Keys
    from tuggle_agent.consul.relay import RelayRegistry

    ok, where = FAST.to_flags(), b'{"address":"10.0.0.1","port":8900}'

    def e(node, rank=None, flags=ok, session="s"):
        out = {"Key": f"tuggle.relay/x/v/{node}", "Flags": flags, "Session": session, "Value": where}
        if rank is not None:
            out["CreateIndex"] = rank
        return out

    entries = [
        e("b", 12),
        e("a", 11, flags=0),
        e("gone", 10, session=None),  # not held
        e("neg", 13, flags=-1),
        e("big", 14, flags=2**64),
        e("text", 15, flags="fast"),
        e("norank"),
    ]
    reg = RelayRegistry(FakeConsul(entries), Keys("tuggle"), "10.0.0.2", 8900)
    index, live = reg.live("x", "v")
    h = Holder("a", "10.0.0.1", 8900)
    assert index == "7" and [(p.node, p.rank, p.flags) for p in live] == [("a", 11, 0), ("b", 12, ok)]
    assert live[0].holder == h
    assert reg.upstream("x", "v", 12) == ("7", [h])
