"""`tuggle-agent serve`: one node's HTTP front.

Start-up order, each step before anything depends on it: claim the data dir (one
`serve` per data dir), bind the port, join Consul (name, reconcile, register), then
answer requests.  A failure at any step exits non-zero with what to do, and leaves
nothing in Consul.  SIGTERM/SIGINT: cancel fetches (their sessions end, freeing slots
and relay entries), deregister, close the socket.  SIGHUP: re-read and check the
config file, reconcile with Consul, stay up.
"""

from __future__ import annotations

import logging
import resource
import signal
import threading

import click

from ..consul.client import ConsulUnavailable
from ..engine.node import Node
from ..engine.store import DataDirLocked, LocalStore
from ..front.app import TuggleApp
from ..front.server import LateApp, make_server
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
    store = LocalStore(cfg.data_dir)
    try:
        store.lock_exclusively()
    except DataDirLocked as exc:
        raise click.ClickException(str(exc)) from None
    # Every client connection is a file descriptor: run out of them and accept() fails.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    late = LateApp()
    try:
        server = make_server(cfg, late)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {cfg.bind}:{cfg.port}: {exc}. Is another tuggle-agent (or another program) "
            "using the port? Choose another `port`; nothing was registered in Consul"
        ) from None
    try:
        node = Node.start(cfg, store)
    except ConsulUnavailable as exc:
        server.stop()
        raise click.ClickException(str(exc)) from None
    late.app = TuggleApp(node)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    # Off the signal handler's frame: reconcile talks to Consul and may take a while.
    signal.signal(
        signal.SIGHUP,
        lambda signum, frame: threading.Thread(
            target=_reload, args=(node, config_path, flags), name="sighup", daemon=True
        ).start(),
    )
    accept = threading.Thread(target=server.serve, name="http-accept", daemon=True)
    accept.start()
    log.info(
        "tuggle-agent node %s serving %s on %s:%d (namespace %s, data %s)",
        node.name,
        "fetch-only" if cfg.fetch_only else "read/write",
        cfg.bind,
        cfg.port,
        cfg.namespace,
        cfg.data_dir,
    )
    print(f"tuggle-agent ready: node {node.name} http://{cfg.bind}:{cfg.port}", flush=True)
    while not stopping.wait(1.0):
        if not accept.is_alive():
            log.error("the HTTP server stopped unexpectedly; leaving the cluster")
            break
    log.info("stopping: cancelling fetches, deregistering from Consul, closing connections")
    node.close()
    server.stop()
    accept.join(10)


def _reload(node: Node, config_path, flags) -> None:
    """SIGHUP: check the config file again and say what a restart would change; reconcile."""
    try:
        new = load_from_flags(config_path, **flags)
    except click.UsageError as exc:
        log.error("SIGHUP: the config file is not valid (%s); still running with the old settings", exc)
        return
    changed = sorted(k for k in vars(new) if getattr(new, k) != getattr(node.cfg, k))
    if changed:
        log.warning(
            "SIGHUP: settings changed in the file (%s) take effect on restart; still running", ", ".join(changed)
        )
    try:
        log.info("SIGHUP: reconciled with Consul: %s", node.reconcile())
    except ConsulUnavailable as exc:
        log.warning("SIGHUP: reconcile failed: %s", exc)
