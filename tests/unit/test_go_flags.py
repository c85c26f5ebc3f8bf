"""`tuggle-agent serve` takes the Go tuggle's single-dash flags as they are."""

import click
import pytest
from click.testing import CliRunner

from tuggle_agent.cli.serve import serve_command, translate_go_flags


def _params(args: list[str]) -> dict:
    ctx = serve_command.make_context("serve", args)
    return {k: v for k, v in ctx.params.items() if v is not None}


@pytest.mark.parametrize(
    "go_args,key,value",
    [
        (["-data-dir", "/var/lib/tuggle"], "data_dir", "/var/lib/tuggle"),
        (["-data-dir=/var/lib/tuggle"], "data_dir", "/var/lib/tuggle"),
        (["-port", "8901"], "port", 8901),
        (["-port=8901"], "port", 8901),
        (["-namespace", "deploy"], "namespace", "deploy"),
        (["-fetch-rate", "50MB"], "fetch_rate", "50MB"),
        (["-fetch-timeout", "5m"], "fetch_timeout", "5m"),
        (["-fetch-timeout=5m"], "fetch_timeout", "5m"),
        (["-slave"], "fetch_only", True),
        (["-slave=true"], "fetch_only", True),
        (["-slave=false"], "fetch_only", False),
    ],
)
def test_each_go_flag_sets_its_setting(go_args, key, value):
    assert _params(go_args)[key] == value


def test_a_whole_go_command_line():
    args = "-data-dir /d -port 8901 -namespace ns -fetch-rate 1MB -fetch-timeout 1m -slave".split()
    assert _params(args) == {
        "data_dir": "/d",
        "port": 8901,
        "namespace": "ns",
        "fetch_rate": "1MB",
        "fetch_timeout": "1m",
        "fetch_only": True,
    }
    assert _params(args) == _params([a.replace("-", "--", 1) if a.startswith("-") else a for a in args])


def test_values_and_unknown_flags_are_left_alone():
    assert translate_go_flags(["--namespace", "deploy", "-x"]) == ["--namespace", "deploy", "-x"]
    assert translate_go_flags(["--data-dir", "/x", "--", "-slave"]) == ["--data-dir", "/x", "--", "-slave"]
    with pytest.raises(click.UsageError, match="-slave=maybe"):
        translate_go_flags(["-slave=maybe"])


def test_help_names_the_go_flags():
    out = CliRunner().invoke(serve_command, ["--help"]).output
    assert "Go tuggle flags accepted as they are: -data-dir, -port, -namespace, -fetch-rate" in " ".join(out.split())


def test_an_unknown_single_dash_flag_is_still_refused():
    result = CliRunner().invoke(serve_command, ["-listen", ":8900"])
    assert result.exit_code == 2 and "No such option" in result.output
