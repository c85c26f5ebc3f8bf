"""`tuggle-agent serve`: one node's HTTP front on waitress."""

from __future__ import annotations

import logging
import signal
import sys

import click
import waitress

from ..consul.client import ConsulUnavailable
from ..engine.node import Node
from ..front.app import TuggleApp
from .options import config_options, load_from_flags, setup_logging

log = logging.getLogger("tuggle_agent")


@click.command("serve")
@config_options
def serve_command(config_path, **flags):
    """Run this node's tuggle-agent: the HTTP API on port 8900.

    \b
    Examples:
      tuggle-agent serve                                   # ./data, port 8900, Consul at 127.0.0.1:8500
      tuggle-agent serve --config /etc/tuggle-agent.yaml
      tuggle-agent serve --data-dir /var/lib/tuggle --fetch-rate 50MB --fetch-only
      CONSUL_HTTP_ADDR=10.0.0.5:8500 tuggle-agent serve --namespace deploy
    """
    cfg = load_from_flags(config_path, **flags)
    setup_logging(cfg.log_level)
    try:
        node = Node.start(cfg)
    except ConsulUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    # waitress receives a whole request body before the app runs, spooling bodies over
    # 512 KiB to the system temp dir (TMPDIR).  Left there on purpose: if the data disk
    # is full, the upload still arrives and gets a clear 507 instead of a reset.
    server = waitress.create_server(
        TuggleApp(node), host=cfg.bind, port=cfg.port, threads=cfg.threads,
        max_request_body_size=cfg.max_upload_size, channel_timeout=max(120, int(cfg.fetch_timeout) + 60),
        connection_limit=max(100, cfg.threads * 4), ident="tuggle-agent",
        # 8 KiB recv() calls cost more CPU than hashing and writing a big upload.
        recv_bytes=256 * 1024)

    def stop(signum, frame):
        log.info("signal %d: deregistering and stopping", signum)
        node.close()
        server.close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("tuggle-agent node %s serving %s on %s:%d (namespace %s, data %s)",
             node.name, "fetch-only" if cfg.fetch_only else "read/write", cfg.bind, cfg.port, cfg.namespace, cfg.data_dir)
    print(f"tuggle-agent ready: node {node.name} http://{cfg.bind}:{cfg.port}", flush=True)
    server.run()
