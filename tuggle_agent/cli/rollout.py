"""`tuggle-agent status NAME` and `tuggle-agent wait NAME --for TARGET`: where an object
is in the cluster (the agent's `GET /<name>?status`), and a deploy gate on it."""

from __future__ import annotations

import time

import click

from ..units import format_bytes
from .client import (
    EXIT_CODES_HELP,
    TIMEOUT,
    Agent,
    ClientError,
    Progress,
    client_command,
    emit_json,
    table,
)
from .targets import TARGET_HELP, Target, needed, reached, shortfall
from .transfer import duration_param, target_param

POLL_INTERVAL = 1.0


def node_rows(nodes: list[dict]) -> list[list]:
    return [
        [
            n.get("node", "?"),
            n.get("state", "?"),
            "yes" if n.get("passing") else "no",
            format_bytes(n.get("bytes_verified") or 0),
            f"{format_bytes(n.get('rate') or 0)}/s" if n.get("rate") else "",
            n.get("source") or "",
            n.get("detail") or "",
        ]
        for n in nodes
    ]


NODE_HEADERS = ["NODE", "STATE", "PASSING", "VERIFIED", "RATE", "SOURCE", "DETAIL"]


def sync_text(sync: dict | None) -> str:
    if not sync:
        return "none"
    filters = [f"{k}={sync[k]!r}" for k in ("node", "service", "tag") if sync.get(k)]
    return " ".join(filters) or "every node"


def render_status(s: dict) -> str:
    lines = [
        f"{s.get('name')}  version {s.get('version')}  {format_bytes(s.get('size') or 0)}  sha256 {s.get('sha256')}",
        f"created {s.get('created_at')}  sync {sync_text(s.get('sync'))}",
        f"complete: {s.get('complete_targets', 0)}/{len(s.get('targets') or [])} targets "
        f"({s.get('complete', 0)} complete copies in all); failed: {', '.join(s.get('failed') or []) or 'none'}",
        "",
        table(NODE_HEADERS, node_rows(s.get("nodes") or [])),
    ]
    return "\n".join(lines)


@click.command("status", epilog=EXIT_CODES_HELP)
@click.argument("name")
@client_command
def status_command(name, agent, as_json):
    """Where NAME is in the cluster: every node's state (complete, fetching, hook_failed,
    missing, down), bytes verified, rate and source.

    \b
    Example:
      tuggle-agent status app.tar.gz
    """
    s = Agent(agent).json(f"/{name}", params={"status": ""})
    if as_json:
        emit_json(s)
    else:
        click.echo(render_status(s))


def wait_for(client: Agent, name: str, target: Target, timeout: float, as_json: bool, doc: dict | None = None) -> None:
    """Poll `?status` until `target` is reached (return) or `timeout` passes (ClientError, exit 4)."""
    deadline = time.monotonic() + timeout
    progress: Progress | None = None
    while True:
        s = client.json(f"/{name}", params={"status": ""})
        targets = set(s.get("targets") or [])
        total, need = len(targets), needed(target, len(targets))
        done = int(s.get("complete_targets", 0))
        verified = sum(n.get("bytes_verified") or 0 for n in s.get("nodes") or [] if n.get("node") in targets)
        extra = f"{format_bytes(verified)} of {format_bytes((s.get('size') or 0) * total)}"
        if progress is None:
            progress = Progress(f"wait {name} for {target} ({need})", total, unit="nodes", quiet=as_json, initial=done)
        progress.set(done, total, extra)
        missing, failing = shortfall(s)
        result = {
            **(doc or {}),
            "name": name,
            "target": str(target),
            "needed": need,
            "targets": total,
            "complete_targets": done,
            "missing": missing,
            "failing": failing,
        }
        if reached(target, s):
            progress.close(extra)
            result["reached"] = True
            if as_json:
                emit_json(result)
            else:
                click.echo(f"{name}: {done}/{total} target nodes complete, target {target} ({need}) reached")
            return
        if time.monotonic() >= deadline:
            progress.close(extra)
            result["reached"] = False
            raise ClientError(timeout_message(name, target, need, done, total, missing, failing), TIMEOUT, result)
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


def timeout_message(name, target, need, done, total, missing, failing) -> str:
    lines = [f"timed out: {name} is complete on {done}/{total} target nodes; target {target} needs {need}"]
    for title, nodes in (("failing", failing), ("missing", missing)):
        if nodes:
            lines.append(f"{title}:")
            lines += [
                f"  {n.get('node')}: {n.get('state')}" + (f" ({n['detail']})" if n.get("detail") else "") for n in nodes
            ]
    return "\n".join(lines)


@click.command("wait", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--for", "target", required=True, callback=target_param, metavar="TARGET", help=TARGET_HELP)
@click.option("--timeout", default="10m", show_default=True, callback=duration_param, help="Give up after this long.")
@client_command
def wait_command(name, target, timeout, agent, as_json):
    """Wait until TARGET of NAME's target nodes hold a complete copy: exit 0 when reached,
    4 on timeout with the missing and failing nodes listed (a deploy pipeline gates on it).

    \b
    TARGET: all (every node the ?sync targets, or every tuggle node without a sync),
            N (that many nodes), P% (that share of the target nodes, rounded up).
    \b
    Examples:
      tuggle-agent wait app.tar.gz --for all --timeout 10m && stretcher …
      tuggle-agent wait app.tar.gz --for 90% --timeout 5m --json
    """
    wait_for(Agent(agent), name, target, timeout, as_json)
