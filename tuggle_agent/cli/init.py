"""`tuggle-agent init`: write the files a node needs where an operator expects them.

The files are the repository's own top-level ones, shipped with the wheel as data files
(pyproject's [tool.setuptools.data-files], installed under <prefix>/share/tuggle-agent/):
the example config, the example hooks, the Consul watches and the systemd unit.  They
are rendered for the default paths; init replaces those with this installation's
(the tuggle-agent executable, the config under --prefix, --data-dir) and never
overwrites a file that exists unless --force is given.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path
from typing import Any

import click

from ..watches.consul_config import agent_executable

# The default paths the shipped files are written for.
DEFAULT_EXECUTABLE = "/usr/local/bin/tuggle-agent"
DEFAULT_CONFIG = "/etc/tuggle-agent/tuggle.yaml"
DEFAULT_DATA_DIR = "/var/lib/tuggle-agent"

# Shipped file (relative to the share dir or the checkout) -> where it goes, by kind.
CONFIG_FILE = "config/tuggle.yaml"
HOOKS = ("hooks/README.md", "hooks/check-disk-space", "hooks/extract-tarball", "hooks/notify", "hooks/verify-checksum")
WATCHES_FILE = "consul.d/tuggle-agent-watches.json"
UNIT_FILE = "systemd/tuggle-agent.service"
SHIPPED = (CONFIG_FILE, *HOOKS, WATCHES_FILE, UNIT_FILE)


def shipped_dir() -> Path:
    """Where the shipped files are: the source checkout this package runs from (an
    editable install), else <prefix>/share/tuggle-agent of the environment or the user."""
    checkout = Path(__file__).resolve().parents[2]
    candidates = [checkout]
    for scheme in (None, "posix_user"):
        try:
            data = sysconfig.get_path("data", scheme) if scheme else sysconfig.get_path("data")
        except KeyError:
            continue
        candidates.append(Path(data) / "share" / "tuggle-agent")
    candidates.append(Path(sys.prefix) / "share" / "tuggle-agent")
    for c in candidates:
        if all((c / f).is_file() for f in SHIPPED):
            return c
    raise click.ClickException(
        "the files tuggle-agent ships (config, hooks, watches, systemd unit) were not found in "
        + ", ".join(str(c) for c in candidates)
        + "; reinstall the package (pip install tuggle-agent)"
    )


def _replace_strings(data: Any, swap: dict[str, str]) -> Any:
    if isinstance(data, str):
        for old, new in swap.items():
            data = data.replace(old, new)
        return data
    if isinstance(data, list):
        return [_replace_strings(x, swap) for x in data]
    if isinstance(data, dict):
        return {k: _replace_strings(v, swap) for k, v in data.items()}
    return data


def render(source: Path, rel: str, swap: dict[str, str], prefix: Path) -> str:
    text = source.read_text()
    if rel == WATCHES_FILE:  # JSON: replace inside the values, so any path stays valid JSON
        return json.dumps(_replace_strings(json.loads(text), swap), indent=2) + "\n"
    text = _replace_strings(text, swap)
    if rel == CONFIG_FILE:
        text = text.replace("\ndata_dir: ./data\n", f"\ndata_dir: {swap[DEFAULT_DATA_DIR]}\n")
        text = text.replace("command: [hooks/", f"command: [{prefix / 'hooks'}/")
    return text


DIR = click.Path(file_okay=False)


@click.command("init")
@click.option("--prefix", default="/etc/tuggle-agent", show_default=True, type=DIR, help="For tuggle.yaml and hooks/.")
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, help="data_dir in tuggle.yaml and the unit.")
@click.option(
    "--consul-config-dir",
    type=DIR,
    help="Where the watches file goes (your Consul agent's -config-dir, e.g. /etc/consul.d) [PREFIX/consul.d].",
)
@click.option(
    "--systemd-dir",
    type=DIR,
    help="Where the unit file goes (e.g. /etc/systemd/system) [PREFIX/systemd].",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist (default: refuse, write nothing).")
def init_command(prefix, data_dir, consul_config_dir, systemd_dir, force):
    """Write the example config, hooks, Consul watches and systemd unit for this host.

    \b
    Examples:
      sudo tuggle-agent init                                  # everything under /etc/tuggle-agent
      sudo tuggle-agent init --consul-config-dir /etc/consul.d --systemd-dir /etc/systemd/system
      tuggle-agent init --prefix ./node1 --data-dir ./node1/data   # try it without root
    """
    prefix_path = Path(prefix).absolute()
    config_path = prefix_path / "tuggle.yaml"
    data_path = Path(data_dir).absolute()
    watches_dir = Path(consul_config_dir or prefix_path / "consul.d").absolute()
    unit_dir = Path(systemd_dir or prefix_path / "systemd").absolute()
    targets = {
        CONFIG_FILE: config_path,
        **{rel: prefix_path / rel for rel in HOOKS},
        WATCHES_FILE: watches_dir / Path(WATCHES_FILE).name,
        UNIT_FILE: unit_dir / Path(UNIT_FILE).name,
    }
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not force:
        raise click.ClickException(
            "these files exist: " + ", ".join(existing) + "; nothing was written (--force overwrites them)"
        )
    source = shipped_dir()
    swap = {
        DEFAULT_EXECUTABLE: agent_executable(),
        DEFAULT_CONFIG: str(config_path),
        DEFAULT_DATA_DIR: str(data_path),
    }
    for rel, dest in targets.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = render(source / rel, rel, swap, prefix_path)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755 if rel in HOOKS and not rel.endswith(".md") else 0o644)
        tmp.replace(dest)
        click.echo(f"wrote {dest}")
    click.echo(
        "\nNext steps:\n"
        f"  edit {config_path} (consul.address, hooks, limits)\n"
        f"  mkdir -p {data_path} and give it to the user the unit runs as (User= in the unit)\n"
        + ("" if consul_config_dir else f"  cp {targets[WATCHES_FILE]} into your Consul -config-dir; consul reload\n")
        + ("" if systemd_dir else f"  cp {targets[UNIT_FILE]} /etc/systemd/system/; systemctl daemon-reload\n")
        + "  systemctl enable --now tuggle-agent"
    )
