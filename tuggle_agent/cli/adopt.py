"""`tuggle-agent adopt`: publish orphans again (after Consul KV lost the objects' metadata).

An orphan is a local copy whose object Consul KV no longer lists, with no tombstone to
prove it was deleted (a restored or emptied KV, a typo'd namespace, an ACL mistake).  The
node keeps such copies unadvertised; adopting one re-creates its metadata and piece
digests from the verified local copy (a KV check-and-set: if several nodes adopt at once,
one writes and the others find their version there) and advertises it again.
"""

from __future__ import annotations

import click

from .client import Agent, agent_option


@click.command("adopt")
@click.argument("names", nargs=-1)
@agent_option
def adopt_command(names, agent):
    """Re-publish orphaned local copies (all orphans of this node, or the NAMES given).
    Adoption is allowed from the agent's host only.

    \b
    Examples:
      curl -s localhost:8900/_tuggle/status | jq .orphans     # what would be adopted
      tuggle-agent adopt                                       # every orphan of this node
      tuggle-agent adopt app.tar.gz --agent http://127.0.0.1:8901
    """
    r = Agent(agent).request("POST", "/_tuggle/adopt", params=[("name", n) for n in names], timeout=600)
    results = r.json()
    if not results:
        click.echo("no orphans on this node: nothing to adopt")
    for name, outcome in sorted(results.items()):
        click.echo(f"{name}: {outcome}")
    if any(outcome.startswith(("not adopted", "no local copy")) for outcome in results.values()):
        raise SystemExit(1)
