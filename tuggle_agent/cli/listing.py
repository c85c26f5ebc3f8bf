"""`tuggle-agent ls` and `tuggle-agent rm NAME`."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..objects.metadata import parse_rfc3339
from ..units import format_bytes, format_duration
from .client import EXIT_CODES_HELP, Agent, client_command, emit_json, table


def age(created_at: str | None) -> str:
    try:
        return format_duration((datetime.now(UTC) - parse_rfc3339(created_at or "")).total_seconds())
    except (ValueError, TypeError):
        return "?"


def holders(obj: dict) -> str:
    if obj.get("no_passing_holder"):
        return f"{obj.get('holders', 0)} (none passing)"
    return str(obj["holders"]) if "holders" in obj else "?"


@click.command("ls", epilog=EXIT_CODES_HELP)
@client_command
def ls_command(agent, as_json):
    """List the cluster's objects: name, size, age, holders, short SHA-256."""
    objects = Agent(agent).json("/")
    if as_json:
        emit_json(objects)
        return
    show_holders = any("holders" in o or "no_passing_holder" in o for o in objects)
    headers = ["NAME", "SIZE", "AGE", *(["HOLDERS"] if show_holders else []), "SHA256"]
    rows = [
        [
            o.get("name"),
            format_bytes(o.get("size") or 0),
            age(o.get("created_at")),
            *([holders(o)] if show_holders else []),
            (o.get("sha256") or "")[:12],
        ]
        for o in sorted(objects, key=lambda o: o.get("name") or "")
    ]
    click.echo(table(headers, rows))


@click.command("rm", epilog=EXIT_CODES_HELP)
@click.argument("name")
@client_command
def rm_command(name, agent, as_json):
    """Delete NAME from the whole cluster (every node answers 404 for it at once)."""
    r = Agent(agent).request("DELETE", f"/{name}")
    if as_json:
        emit_json({"name": name, "deleted": True, "message": r.text.strip()})
    else:
        click.echo(r.text.strip() or f"deleted {name}")
