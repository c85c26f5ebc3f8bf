"""`tuggle-agent install-watches`: write the watch config into a Consul config dir."""

from __future__ import annotations

import click

from ..consul.client import consul_errors, make_client_from
from ..watches.consul_config import HANDLERS, install
from .options import load_from_flags


@click.command("install-watches")
@click.option(
    "--consul-config-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="The Consul agent's -config-dir, e.g. /etc/consul.d.",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="This node's tuggle-agent YAML config; the handlers are run with it.",
)
@click.option("--reload/--no-reload", default=False, help="Ask the local Consul agent to reload its config.")
@click.option(
    "--handler",
    type=click.Choice(HANDLERS),
    default="script",
    show_default=True,
    help="script: Consul runs `tuggle-agent handle-event` per firing; http: Consul POSTs the watch "
    "data to this node's tuggle-agent (no process start: faster on busy or small hosts).",
)
def install_watches_command(consul_config_dir, config_path, reload, handler):
    """Install the Consul watches that drive prefetch and delete on this node.

    \b
    Examples:
      tuggle-agent install-watches --consul-config-dir /etc/consul.d --config /etc/tuggle-agent.yaml --reload
      tuggle-agent install-watches --consul-config-dir ./consul.d --config config/tuggle.yaml --handler http
    """
    cfg = load_from_flags(config_path)
    path = install(cfg, config_path, consul_config_dir, handler=handler)
    click.echo(f"wrote {path}")
    if reload:
        client = make_client_from(cfg)
        with consul_errors(client, "asking the Consul agent to reload"):
            client.agent.reload()
        click.echo("Consul agent reloaded: the watches run now")
