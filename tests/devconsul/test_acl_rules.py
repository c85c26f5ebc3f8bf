"""ACL rule parsing and matching, without a cluster: the decisions Consul's
policy authorizer makes for the rules a product's policies would hold."""

from __future__ import annotations

import json

import pytest

from tuggle_agent.devconsul.errors import StateError
from tuggle_agent.devconsul.state.acl_rules import LIST, READ, WRITE, Authorizer, merge, parse_rules

HCL = """
key_prefix "" { policy = "read" }
key_prefix "tuggle/" { policy = "write" }
key_prefix "tuggle/private/" { policy = "deny" }
key "tuggle/private/open" { policy = "read" }
key_prefix "index/" { policy = "list" }
service "tuggle" { policy = "write" }
node_prefix "" { policy = "read" }
operator = "read"
"""


def authorizer(*rules: str) -> Authorizer:
    return Authorizer(merge(parse_rules(r) for r in rules))


def test_longest_prefix_wins_and_exact_beats_prefix():
    a = authorizer(HCL)
    assert a.decide("key", "anything", READ) is True
    assert a.decide("key", "anything", WRITE) is False
    assert a.decide("key", "tuggle/x", WRITE) is True
    assert a.decide("key", "tuggle/private/x", READ) is False  # deny under a write prefix
    assert a.decide("key", "tuggle/private/open", READ) is True  # exact rule beats the deny prefix
    assert a.decide("key", "tuggle/private/open/more", READ) is False  # exact means exactly that key


def test_levels_list_is_for_keys_and_grants_read():
    a = authorizer(HCL)
    assert a.decide("key", "index/a", LIST) is True
    assert a.decide("key", "index/a", READ) is True
    assert a.decide("key", "index/a", WRITE) is False
    with pytest.raises(StateError, match="Invalid service policy"):
        parse_rules('service "x" { policy = "list" }')


def test_no_rule_is_default_not_deny():
    a = authorizer(HCL)
    assert a.decide("service", "other", READ) is None
    assert a.decide("session", "node1", WRITE) is None
    assert a.decide("acl", "", READ) is None
    assert a.decide("operator", "", READ) is True
    assert a.decide("operator", "", WRITE) is False


def test_json_rules_parse_like_hcl():
    as_json = json.dumps(
        {
            "key_prefix": {"tuggle/": {"policy": "write"}},
            "service": [{"tuggle": {"policy": "write"}}],
            "operator": "read",
        }
    )
    a = authorizer(as_json)
    assert a.decide("key", "tuggle/x", WRITE) is True
    assert a.decide("service", "tuggle", WRITE) is True
    assert a.decide("operator", "", READ) is True


def test_merging_policies_the_stronger_rule_wins_deny_strongest():
    a = authorizer('key_prefix "a/" { policy = "read" }', 'key_prefix "a/" { policy = "write" }')
    assert a.decide("key", "a/x", WRITE) is True
    a = authorizer('key_prefix "a/" { policy = "write" }', 'key_prefix "a/" { policy = "deny" }')
    assert a.decide("key", "a/x", READ) is False


def test_key_write_prefix_needs_write_on_every_rule_under_the_prefix():
    a = authorizer(HCL)
    assert a.decide_key_write_prefix("tuggle/") is False  # tuggle/private/ is denied
    assert a.decide_key_write_prefix("tuggle/public/") is True
    assert a.decide_key_write_prefix("other/") is False  # governed by the read rule on ""
    assert authorizer('service "x" { policy = "write" }').decide_key_write_prefix("k/") is None


def test_bad_rules_are_refused_with_consul_errors():
    with pytest.raises(StateError, match="Failed to parse ACL rules"):
        parse_rules("key_prefix {")
    with pytest.raises(StateError, match="Invalid key_prefix policy"):
        parse_rules('key_prefix "a" { policy = "bogus" }')
    with pytest.raises(StateError, match="Invalid operator policy"):
        parse_rules('operator = "list"')
    with pytest.raises(StateError, match="Invalid service_prefix intentions policy"):
        parse_rules('service_prefix "" { policy = "read" intentions = "list" }')
