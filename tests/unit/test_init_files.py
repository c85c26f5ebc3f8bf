"""The operator's files that ship with the wheel: the pyproject table that installs them,
and the defaults `tuggle-agent init` replaces in them."""

import json
import tomllib

from tests import REPO
from tuggle_agent.cli import init


def test_pyproject_ships_exactly_the_files_init_writes():
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {f"{f}" for files in table.values() for f in files}
    assert shipped == set(init.SHIPPED)
    for target, files in table.items():
        for f in files:
            assert target == "share/tuggle-agent/" + f.rsplit("/", 1)[0], (target, f)
    # A hook added to hooks/ ships too (or this test names it).
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "hooks").iterdir()} == set(init.HOOKS)


def test_shipped_files_are_found_in_the_checkout():
    assert init.shipped_dir() == REPO


def test_shipped_files_carry_the_defaults_init_replaces():
    unit = (REPO / init.UNIT_FILE).read_text()
    assert f"ExecStart={init.DEFAULT_EXECUTABLE} serve --config {init.DEFAULT_CONFIG}\n" in unit
    assert f"ReadWritePaths={init.DEFAULT_DATA_DIR}\n" in unit
    watches = json.loads((REPO / init.WATCHES_FILE).read_text())["watches"]
    assert all(w["args"] == [init.DEFAULT_EXECUTABLE, "handle-event", "--config", init.DEFAULT_CONFIG] for w in watches)
    config = (REPO / init.CONFIG_FILE).read_text()
    assert "\ndata_dir: ./data\n" in config and "command: [hooks/" in config


def test_systemd_unit_is_notify_restarting_and_hardened():
    lines = set((REPO / init.UNIT_FILE).read_text().splitlines())
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "WantedBy=multi-user.target",
    ):
        assert line in lines, line
