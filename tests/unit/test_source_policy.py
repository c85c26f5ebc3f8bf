"""The source policy: predecessor in the relay chain first, then a random near complete holder;
holders that failed this fetch are never asked again."""

import random

from tuggle_agent.consul.health import Holder
from tuggle_agent.engine.sources import SourcePolicy


def h(name: str, rtt: float = 0.0) -> Holder:
    return Holder(name, "127.0.0.1", 1, rtt)


def names(cands):
    return [c.holder.node for c in cands]


def test_partial_predecessor_first_then_complete_holders():
    policy = SourcePolicy(nearest=1, rng=random.Random(1))
    peers = {n: h(n) for n in ("p1", "p2", "p3")}
    cands = policy.order([h("c1", 0.1), h("c2", 0.2)], ["p1", "p2", "p3"], peers, set())
    assert names(cands) == ["p3", "p2", "p1", "c1", "c2"]
    assert [c.kind for c in cands] == ["partial"] * 3 + ["complete"] * 2


def test_excluded_holders_are_never_candidates():
    policy = SourcePolicy(nearest=3)
    peers = {"p1": h("p1")}
    cands = policy.order([h("c1"), h("c2")], ["p1"], peers, {"c1", "p1"})
    assert names(cands) == ["c2"]


def test_random_choice_stays_among_the_nearest():
    policy = SourcePolicy(nearest=2, rng=random.Random(7))
    complete = [h("near1", 0.1), h("near2", 0.2), h("far", 0.9)]
    firsts = {names(policy.order(complete, [], {}, set()))[0] for _ in range(200)}
    assert firsts == {"near1", "near2"}
    for _ in range(20):
        assert names(policy.order(complete, [], {}, set()))[-1] == "far"


def test_partial_holder_without_a_known_address_or_also_complete_is_skipped():
    policy = SourcePolicy(nearest=3)
    cands = policy.order([h("x")], ["x", "ghost"], {"x": h("x")}, set())
    assert names(cands) == ["x"] and cands[0].kind == "complete"


def test_no_holders_no_candidates():
    assert SourcePolicy(nearest=3).order([], [], {}, set()) == []
