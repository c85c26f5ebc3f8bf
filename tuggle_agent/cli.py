"""The `tuggle-agent` command line: one click group, one sub-command per job.

Each sub-command lives next to the code it drives; this module only wires them
together so `tuggle-agent --help` lists everything in one place.
"""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tuggle-agent")
def main() -> None:
    """Distribute files inside a Consul cluster.

    PUT a file on one node; every other node GETs it from the nearest node that
    already holds it, so the cluster feeds itself instead of one origin.

    \b
    Examples:
      tuggle-agent dev --nodes 3                  # local 3-node cluster on the embedded dev agent
      tuggle-agent serve --config config/tuggle.yaml
      tuggle-agent devconsul --nodes 3 --http-port 8500
    """


def _register() -> None:
    from .devconsul.cli import devconsul_command
    from .handle_event import handle_event_command
    from .install_watches import install_watches_command
    from .serve import serve_command

    from .devcluster import dev_command

    main.add_command(serve_command, "serve")
    main.add_command(dev_command, "dev")
    main.add_command(handle_event_command, "handle-event")
    main.add_command(install_watches_command, "install-watches")
    main.add_command(devconsul_command, "devconsul")


_register()
