"""Rollout targets of `tuggle-agent wait` / `put --wait` (tuggle_agent/cli/targets.py)."""

import pytest

from tuggle_agent.cli.targets import Target, needed, parse_target, reached, shortfall


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("all", Target("all")),
        ("ALL", Target("all")),
        ("1", Target("count", 1)),
        ("12", Target("count", 12)),
        ("50%", Target("percent", 50)),
        ("12.5%", Target("percent", 12.5)),
        ("100%", Target("percent", 100)),
    ],
)
def test_parse(text, target):
    assert parse_target(text) == target
    assert parse_target(str(target)) == target


@pytest.mark.parametrize("text", ["", "0", "-1", "0%", "101%", "1.5", "half", "50 %", "%", "all%"])
def test_parse_refuses(text):
    with pytest.raises(ValueError, match=r"expected a target: all \| N \| P%"):
        parse_target(text)


@pytest.mark.parametrize(
    ("target", "total", "need"),
    [
        ("all", 0, 0),
        ("all", 7, 7),
        ("3", 7, 3),
        ("9", 7, 9),  # more than there are: never reached, wait times out naming the missing nodes
        ("50%", 7, 4),  # rounded up: half of 7 nodes is not 3
        ("50%", 8, 4),
        ("10%", 30, 3),
        ("64.4%", 250, 161),  # exactly 161: in floats 64.4 * 250 / 100 is 161.00000000000003, rounded up to 162
        ("1%", 200, 2),
        ("0.5%", 200, 1),
        ("100%", 5, 5),
        ("33.3%", 3, 1),
    ],
)
def test_needed(target, total, need):
    assert needed(parse_target(target), total) == need


def status(complete_targets, targets, nodes=(), failed=()):
    return {
        "complete_targets": complete_targets,
        "targets": list(targets),
        "nodes": list(nodes),
        "failed": list(failed),
    }


def test_reached_counts_complete_targets_only():
    targets = ["n1", "n2", "n3", "n4"]
    assert not reached(parse_target("all"), status(3, targets))
    assert reached(parse_target("all"), status(4, targets))
    assert reached(parse_target("75%"), status(3, targets))
    assert not reached(parse_target("76%"), status(3, targets))
    assert reached(parse_target("2"), status(2, targets))
    assert not reached(
        parse_target("2"), {"targets": targets, "complete": 4}
    )  # holders outside the targets do not count


def test_shortfall_splits_missing_from_failing():
    nodes = [
        {"node": "n1", "state": "complete"},
        {"node": "n2", "state": "fetching", "detail": "from n1"},
        {"node": "n3", "state": "hook_failed", "detail": "post_download exited 1"},
        {"node": "n4", "state": "down", "detail": "serfHealth critical"},
        {"node": "x9", "state": "complete"},  # a holder that is not a target
    ]
    missing, failing = shortfall(status(1, ["n1", "n2", "n3", "n4", "n5"], nodes, failed=["n3"]))
    assert [n["node"] for n in missing] == ["n2", "n5"]
    assert missing[1]["state"] == "missing"  # a target the document does not report on
    assert [(n["node"], n["state"]) for n in failing] == [("n3", "hook_failed"), ("n4", "down")]


def test_shortfall_of_a_reached_rollout_is_empty():
    nodes = [{"node": n, "state": "complete"} for n in ("a", "b")]
    assert shortfall(status(2, ["a", "b"], nodes)) == ([], [])
