"""`tuggle-agent handle-event`: the script handler Consul's watches run.

It checks that stdin is a watch result and hands it to the node's running `serve`
process (POST /_tuggle/watch), which owns downloads and their queue: Consul waits
for a handler and queues later changes behind it, so the handler returns at once.
The same endpoint serves watches declared with `handler_type: http`, so both paths
run one piece of logic.  Consul keeps only 4 KiB of a handler's output, at DEBUG, so
what it did is also appended to <data_dir>/.tuggle/handle-event.log, rotated at
LOG_MAX_BYTES with LOG_BACKUPS older files kept (handle-event.log.1 ...), so it never
grows without bound however often Consul fires.
"""

from __future__ import annotations

import http.client
import logging
import logging.handlers
import sys
from pathlib import Path

import click

from ..watches.input import BadInput, parse_watch_body
from .options import load_from_flags, setup_logging

log = logging.getLogger("tuggle_agent.cli.handle_event")

LOG_MAX_BYTES = 1 << 20  # handle-event.log is rotated at 1 MiB ...
LOG_BACKUPS = 3  # ... keeping 3 older files: at most 4 MiB in all


def forward(cfg, body: bytes) -> str:
    host = cfg.local_host
    conn = http.client.HTTPConnection(host, cfg.port, timeout=10)
    try:
        conn.request("POST", "/_tuggle/watch", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        answer = r.read().decode(errors="replace").strip()
    except OSError as exc:
        raise click.ClickException(
            f"could not reach the local tuggle-agent at http://{host}:{cfg.port} ({exc}); is `tuggle-agent serve` "
            "running? It reconciles with Consul when it starts, so nothing is lost."
        ) from None
    finally:
        conn.close()
    if r.status >= 400:
        raise click.ClickException(f"the local tuggle-agent refused the watch data ({r.status}): {answer}")
    return answer


def _log_to_data_dir(cfg) -> logging.Handler:
    state = Path(cfg.data_dir) / ".tuggle"
    state.mkdir(parents=True, exist_ok=True)
    # The two watches' handlers may run at once: a rotation racing the other process's write
    # can lose that line, but the files never grow past the bound.
    h = logging.handlers.RotatingFileHandler(
        state / "handle-event.log", maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS
    )
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s handle-event[%(process)d]: %(message)s"))
    logging.getLogger("tuggle_agent").addHandler(h)
    return h


@click.command("handle-event")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="TUGGLE_CONFIG",
    help="The node's YAML config (the same file `serve` uses).",
)
def handle_event_command(config_path):
    """Handle a Consul watch's output on stdin (run by Consul, or by hand).

    \b
    Examples (what Consul runs, and how to try it by hand):
      consul watch -type=event -name=tuggle tuggle-agent handle-event --config /etc/tuggle-agent.yaml
      consul watch -type=key -key=tuggle.changes tuggle-agent handle-event --config /etc/tuggle-agent.yaml
      consul watch -type=keyprefix -prefix=tuggle/ tuggle-agent handle-event --config /etc/tuggle-agent.yaml
      echo null | tuggle-agent handle-event --config config/tuggle.yaml
    """
    cfg = load_from_flags(config_path)
    setup_logging(cfg.log_level, cfg.log_format)
    _log_to_data_dir(cfg)
    body = sys.stdin.buffer.read()
    try:
        _, kind = parse_watch_body(body)
    except BadInput as exc:
        raise click.ClickException(
            f"stdin is not a Consul watch result ({exc}); expected what a key, keyprefix or event watch sends. "
            "Nothing was changed."
        ) from None
    if kind == "empty":
        return
    log.info("%s watch data handled: %s", kind, forward(cfg, body).replace("\n", " "))
