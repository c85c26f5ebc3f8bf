"""Go wire formats: JSON escaping, durations, booleans, event indexes."""

from __future__ import annotations

import pytest

from tuggle_agent.devconsul.codec import (
    Fields,
    format_duration,
    go_json,
    parse_bool,
    parse_duration,
    uuid_to_uint64,
)


def test_go_json_escapes_html_and_line_separators_but_not_unicode():
    assert go_json({"a": "<x>&é\u2028"}) == '{"a":"\\u003cx\\u003e\\u0026é\\u2028"}'
    assert go_json([None, True, 1]) == "[null,true,1]"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m30s", 90), ("100ms", 0.1), ("1.5h", 5400), ("0", 0), ("2us", 2e-6), ("-1s", -1)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1s2"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(10, "10s"), (90, "1m30s"), (0.1, "100ms"), (86400, "24h0m0s"), (0, "0s"), (1.5, "1.5s")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_parse_bool_and_uuid_index():
    assert parse_bool("T") is True and parse_bool("0") is False
    with pytest.raises(ValueError):
        parse_bool("yes")
    assert uuid_to_uint64("b54fe110-7af5-cafc-d1fb-afc8ba432b1c") == 7256511592453824992


def test_fields_fold_case_and_snake_case():
    fields = Fields({"enable_tag_override": True, "NAME": "x", "Check": {"check_id": "c"}})
    assert fields.get("EnableTagOverride") is True and fields.get("Name") == "x"
    assert fields.sub("check").get("CheckID") == "c" and fields.get("Missing", 3) == 3
