"""The `tuggle-agent` command line: one click group, one sub-command per job.

Each sub-command lives next to the code it drives and is imported only when it
runs: Consul starts `handle-event` for every watch firing, so its start-up time
matters and it must not pay for the dev cluster's imports.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

COMMANDS = {
    "serve": "tuggle_agent.cli.serve:serve_command",
    "dev": "tuggle_agent.cli.dev:dev_command",
    "devconsul": "tuggle_agent.devconsul.cli:devconsul_command",
    "handle-event": "tuggle_agent.cli.handle_event:handle_event_command",
    "install-watches": "tuggle_agent.cli.install_watches:install_watches_command",
    "adopt": "tuggle_agent.cli.adopt:adopt_command",
    "init": "tuggle_agent.cli.init:init_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tuggle-agent")
def main() -> None:
    """Distribute files inside a Consul cluster.

    PUT a file on one node; every other node GETs it from the nearest node that
    already holds it, so the cluster feeds itself instead of one origin.

    \b
    Examples:
      tuggle-agent dev --nodes 3                  # local 3-node cluster on the embedded dev agent
      tuggle-agent serve --config config/tuggle.yaml
      tuggle-agent install-watches --consul-config-dir /etc/consul.d --config /etc/tuggle-agent.yaml --reload
      tuggle-agent devconsul --nodes 3 --http-port 8500
    """
