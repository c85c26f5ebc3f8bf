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
import os
import resource
import signal
import socket
import threading

import click

from ..consul.client import ConsulUnavailable
from ..engine.node import Node
from ..engine.store import DataDirLocked, LocalStore
from ..front.accesslog import AccessLog
from ..front.app import TuggleApp
from ..front.server import LateApp, make_server
from .options import config_options, load_from_flags, setup_logging

log = logging.getLogger("tuggle_agent")

# The Go tuggle's flags (Go's flag package: one dash, `-flag value` or `-flag=value`) and ours.
GO_FLAGS = {
    "-data-dir": "--data-dir",
    "-port": "--port",
    "-namespace": "--namespace",
    "-fetch-rate": "--fetch-rate",
    "-fetch-timeout": "--fetch-timeout",
    "-slave": "--slave",
}
# Go's strconv.ParseBool, which reads `-slave=<value>`.
_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True}
_GO_BOOL |= {"0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def translate_go_flags(args: list[str]) -> list[str]:
    """`-data-dir /d -slave` -> `--data-dir /d --slave`, so a Go tuggle command line runs
    unchanged.  Go's boolean `-slave=true|false` becomes --slave / --no-fetch-only.
    Nothing after `--` is touched."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        flag, eq, value = arg.partition("=")
        if flag == "-slave" and eq:
            if value not in _GO_BOOL:
                raise click.UsageError(f"-slave={value}: expected true or false")
            out.append("--slave" if _GO_BOOL[value] else "--no-fetch-only")
        elif flag in GO_FLAGS:
            out.append(GO_FLAGS[flag] + eq + value)
        else:
            out.append(arg)
    return out


def sd_notify(state: str) -> bool:
    """Tell systemd (Type=notify) about our state: one datagram to $NOTIFY_SOCKET, as
    sd_notify(3) sends it ("@..." is an abstract socket).  False when not run by systemd;
    a failure to send is logged, never fatal."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd (%s) at NOTIFY_SOCKET=%s: %s", state.split("\n")[0], address, exc)
        return False
    return True


class GoFlagsCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, translate_go_flags(args))


@click.command("serve", cls=GoFlagsCommand)
@config_options
def serve_command(config_path, **flags):
    """Run this node's tuggle-agent: the HTTP API on port 8900.

    \b
    Examples:
      tuggle-agent serve                                   # ./data, port 8900, Consul at 127.0.0.1:8500
      tuggle-agent serve --config /etc/tuggle-agent.yaml
      tuggle-agent serve --data-dir /var/lib/tuggle --fetch-rate 50MB --fetch-only
      CONSUL_HTTP_ADDR=10.0.0.5:8500 tuggle-agent serve --namespace deploy
      tuggle-agent serve -data-dir /var/lib/tuggle -port 8900 -slave   # the Go tuggle's flags work too

    \b
    Go tuggle flags accepted as they are: -data-dir, -port, -namespace, -fetch-rate,
    -fetch-timeout, -slave (also -flag=value).
    """
    cfg = load_from_flags(config_path, **flags)
    setup_logging(cfg.log_level, cfg.log_format)
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
        server = make_server(cfg, AccessLog(late))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {cfg.bind}:{cfg.port}: {exc}. Is another tuggle-agent (or another program) "
            "using the port? Choose another `port`; nothing was registered in Consul"
        ) from None
    # Accept at once: while Node.start waits for Consul, clients (and Consul's own check)
    # get a prompt 503 "starting" instead of a connection stuck in the listen queue.
    accept = threading.Thread(target=server.serve, name="http-accept", daemon=True)
    accept.start()
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
    # Registered in Consul (Node.start) and accepting: systemd may start what depends on us.
    sd_notify(f"READY=1\nSTATUS=serving node {node.name} on {cfg.bind}:{cfg.port}")
    while not stopping.wait(1.0):
        if not accept.is_alive():
            log.error("the HTTP server stopped unexpectedly; leaving the cluster")
            break
    log.info("stopping: cancelling fetches, deregistering from Consul, closing connections")
    sd_notify("STOPPING=1")
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
