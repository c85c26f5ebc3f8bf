"""Sync filters: Go regexp syntax and Consul's event-filter semantics, evaluated in linear time."""

import time

import pytest

from tuggle_agent.objects.syncfilter import MAX_FILTER_LEN, BadFilter, check, matches


def test_empty_filters_match_any_node():
    assert matches("", "", "", "node1", "tuggle", [])


def test_patterns_match_anywhere_like_go_matchstring():
    # Go's regexp.MatchString is a search, not a full match: "web" matches "my-web-1".
    assert matches("web", "", "", "my-web-1", "tuggle", [])
    assert matches("", "ugg", "", "n", "tuggle", [])
    assert not matches("db", "", "", "my-web-1", "tuggle", [])


def test_anchors_restrict_to_whole_or_prefix():
    assert matches("^web", "", "", "web-1", "tuggle", [])
    assert not matches("^web", "", "", "my-web-1", "tuggle", [])
    assert matches("^web-[0-9]+$", "", "", "web-12", "tuggle", [])
    assert not matches("^web-[0-9]+$", "", "", "web-12x", "tuggle", [])


def test_service_and_tag_rules():
    assert not matches("", "^other$", "", "n", "tuggle", ["a"])
    assert matches("", "tuggle", "^gpu$", "n", "tuggle", ["x", "gpu"])  # one matching tag is enough
    assert not matches("", "tuggle", "^gpu$", "n", "tuggle", ["x", "gpus"])
    assert not matches("", "tuggle", "gpu", "n", "tuggle", [])
    assert not matches("node9", "tuggle", "", "node1", "tuggle", [])  # every given filter must match


def test_catastrophic_pattern_is_linear_time():
    # (a+)+$ against a^40 b takes 2^40 steps in a backtracking engine; RE2 is linear.
    start = time.monotonic()
    assert not matches("(a+)+$", "", "", "a" * 40 + "b", "tuggle", [])
    assert not matches("(a|aa)+$", "", "", "a" * 5000 + "!", "tuggle", [])
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a)\1",  # backreference
        "(?=a)b",  # lookahead
        "(?<=a)b",  # lookbehind
        "(?!a)b",  # negative lookahead
        "a++",  # possessive repeat
        r"\Z",  # Perl's end of string; Go has only \z
        r"\C",  # RE2 accepts "any byte", Go does not
        "(",  # unbalanced
        "a{1001}",  # repeat count above Go's 1000
    ],
)
def test_perl_only_and_invalid_syntax_refused(pattern):
    with pytest.raises(BadFilter, match="node"):
        check(pattern, "", "")


def test_go_syntax_accepted():
    for pattern in [r"^web-\d+$", r"(?i)WEB", r"(?P<n>x)", r"\pL+", r"[[:alpha:]]", r"\\C", r"a\z", ""]:
        check(pattern, "", "")


def test_tag_without_service_refused_with_consuls_reason():
    with pytest.raises(BadFilter, match="a tag filter needs a service filter too"):
        check("", "", "gpu")
    with pytest.raises(BadFilter, match="a tag filter needs a service filter too"):
        matches("", "", "gpu", "n", "tuggle", ["gpu"])


def test_too_long_and_non_string_refused_naming_the_key():
    with pytest.raises(BadFilter, match="service: longer than"):
        check("", "a" * (MAX_FILTER_LEN + 1), "")
    check("", "a" * MAX_FILTER_LEN, "")
    with pytest.raises(BadFilter, match="tag: expected a string"):
        check("", "x", 5)


def test_refused_pattern_prints_nothing(capfd):
    with pytest.raises(BadFilter):
        check("(", "", "")
    assert capfd.readouterr().err == ""
