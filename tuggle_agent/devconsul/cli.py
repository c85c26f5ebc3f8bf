"""`tuggle-agent devconsul`: run a DevCluster in the foreground."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from .cluster import DevCluster
from .codec import parse_duration
from .config import ConfigError
from .timings import Timings

LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


class GoDuration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(f"{value!r} is not a Go duration such as 500ms, 10s or 5m", param, ctx)


DURATION = GoDuration()

# (flag, Timings field, help)
TIMING_FLAGS = (
    ("--default-query-time", "default_query_time", "Blocking query wait when none is given (300s)."),
    ("--max-query-time", "max_query_time", "Cap on a blocking query's wait (600s)."),
    ("--check-min-interval", "check_min_interval", "Check intervals below this are raised to it (1s)."),
    ("--watch-backoff-base", "watch_backoff_base", "Watch retry after the n-th error: base*n^2 (5s)."),
    ("--watch-backoff-max", "watch_backoff_max", "Cap on the watch retry delay (180s)."),
    ("--session-ttl-min", "session_ttl_min", "Smallest session TTL accepted (10s)."),
    ("--lock-delay-max", "lock_delay_max", "Cap on a session's lock-delay (60s)."),
    ("--event-list-max-wait", "event_list_max_wait", "event/list blocking time with ?index (600s)."),
)


def _timing_options(fn):
    for flag, _, help_text in reversed(TIMING_FLAGS):
        fn = click.option(flag, type=DURATION, default=None, help=help_text)(fn)
    return fn


@click.command(context_settings={"max_content_width": 100})
@click.option("--nodes", "-n", type=click.IntRange(1, 200), default=3, show_default=True, help="Number of nodes.")
@click.option(
    "--http-port",
    "-p",
    type=click.IntRange(1, 65535),
    default=8500,
    show_default=True,
    help="HTTP port of node1; node i listens on port+i-1.",
)
@click.option(
    "--config-dir",
    "config_dirs",
    multiple=True,
    metavar="DIR",
    help="Consul config dir or file (*.json, *.hcl) read for `watches`; repeatable; '{node}' is replaced by the node name.",
)
@click.option(
    "--zones",
    "-z",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Spread nodes round-robin over this many zones (node i in zone (i-1) % Z); same-zone RTT ~0.2ms, cross-zone ~20ms.",
)
@click.option("--fast", is_flag=True, help="Start from Timings.fast() (test timings) instead of Consul's defaults.")
@click.option("--no-query-jitter", is_flag=True, help="Do not add the wait/16 jitter to blocking queries.")
@click.option(
    "--no-check-stagger", is_flag=True, help="Run a new check at once instead of after a random part of its interval."
)
@click.option(
    "--enable-script-checks", is_flag=True, help="Allow script checks (Args) like Consul's enable_script_checks."
)
@click.option(
    "--acl",
    is_flag=True,
    help='Enable ACLs with default policy deny, like acl { enabled = true, default_policy = "deny" }.',
)
@click.option(
    "--acl-master-token",
    metavar="SECRET",
    help="SecretID of the initial management token (with --acl; default: a random UUID, printed on the ready line).",
)
@click.option(
    "--acl-agent-token",
    metavar="SECRET",
    help="Token of the nodes' config-dir watches that name none (with --acl; default: the master token).",
)
@_timing_options
@click.option("--log-level", type=click.Choice(list(LOG_LEVELS)), default="info", show_default=True)
def devconsul_command(
    nodes,
    http_port,
    config_dirs,
    zones,
    fast,
    no_query_jitter,
    no_check_stagger,
    enable_script_checks,
    acl,
    acl_master_token,
    acl_agent_token,
    log_level,
    **timing_values,
):
    """Run a Consul-compatible dev cluster (datacenter dc1) on 127.0.0.1.

    A stand-in for `consul agent -dev` speaking the Consul HTTP API subset
    tuggle-agent uses: KV, sessions, agent services/checks (HTTP/TTL checks
    really run), health, catalog, events, coordinates and config-dir watches
    whose handlers run as real processes. All nodes share one KV store,
    catalog and session table; each has its own services, checks, events
    and watches. Prints one ready line on stdout when every node answers;
    SIGINT/SIGTERM stop it (watch handlers included), SIGHUP reloads every
    node's config like `consul reload`. With --acl, requests need tokens as
    on a Consul agent with ACLs on (default deny); the ready line then ends
    with the master token.

    \b
    Examples:
      tuggle-agent devconsul --nodes 3 --http-port 8500
      tuggle-agent devconsul -n 6 --zones 2 --config-dir '.dev/{node}/consul.d'
      tuggle-agent devconsul --fast --watch-backoff-base 1s --log-level debug
      tuggle-agent devconsul --acl --acl-master-token "$(uuidgen)"
    """
    if (acl_master_token or acl_agent_token) and not acl:
        raise click.UsageError("--acl-master-token and --acl-agent-token need --acl")
    logging.basicConfig(
        level=LOG_LEVELS[log_level], stream=sys.stderr, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s"
    )
    timings = Timings.fast() if fast else Timings()
    overrides = {field: timing_values[flag.lstrip("-").replace("-", "_")] for flag, field, _ in TIMING_FLAGS}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if no_query_jitter:
        overrides["query_jitter"] = False
    if no_check_stagger:
        overrides["check_stagger"] = False
    cluster = DevCluster(
        nodes=nodes,
        http_port=http_port,
        config_dirs=config_dirs,
        zones=zones,
        timings=timings.replace(**overrides),
        enable_script_checks=enable_script_checks,
        acl=acl,
        acl_master_token=acl_master_token,
        agent_token=acl_agent_token,
    )
    try:
        cluster.start()
    except (ConfigError, OSError, TimeoutError) as err:
        raise click.ClickException(str(err)) from err
    done = threading.Event()
    handlers = {
        signal.SIGINT: lambda *_: done.set(),
        signal.SIGTERM: lambda *_: done.set(),
        signal.SIGHUP: lambda *_: threading.Thread(target=_reload_all, args=(cluster,), daemon=True).start(),
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        click.echo(cluster.ready_line())
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    finally:
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reload_all(cluster: DevCluster) -> None:
    for agent in cluster.nodes:
        if not agent.running:
            continue
        try:
            agent.reload()
        except ConfigError as err:
            logging.getLogger("tuggle_agent.devconsul").error("%s: reload failed: %s", agent.name, err)
