"""`tuggle-agent put` and `tuggle-agent get`: move one file to or from the local agent."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import click

from ..units import parse_duration
from .client import (
    CHECKSUM,
    EXIT_CODES_HELP,
    Agent,
    ClientError,
    Progress,
    client_command,
    emit_json,
    etag_sha256,
)
from .targets import TARGET_HELP, parse_target

CHUNK = 1 << 20


class HashingReader:
    """A file that hashes and reports what is read from it; its len() makes requests
    send Content-Length (streamed, not chunked)."""

    def __init__(self, f, size: int, progress: Progress):
        self.f, self.size, self.progress = f, size, progress
        self.sha = hashlib.sha256()

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(CHUNK if n is None or n < 0 else max(n, CHUNK))
        self.sha.update(data)
        self.progress.update(len(data))
        return data


def target_param(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def duration_param(ctx, param, value):
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("put", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name", required=False)
@click.option("--sync", is_flag=True, help="Every matching node prefetches it (durable: nodes that are down catch up).")
@click.option("--node", default="", help="--sync only nodes whose name matches this regexp (RE2).")
@click.option("--service", default="", help="--sync only nodes running a service matching this regexp.")
@click.option("--tag", default="", help="--sync only nodes with a service tag matching this regexp.")
@click.option("--content-type", help="Content-Type to store [application/octet-stream].")
@click.option("--wait", "wait_target", callback=target_param, metavar="TARGET", help=f"Then wait for: {TARGET_HELP}.")
@click.option("--timeout", default="10m", show_default=True, callback=duration_param, help="How long --wait waits.")
@client_command
def put_command(file, name, sync, node, service, tag, content_type, wait_target, timeout, agent, as_json):
    """Store FILE on the local agent as NAME (default: FILE's basename); print its size and SHA-256.

    With --wait, then wait like `tuggle-agent wait NAME --for TARGET` (exit 4 on timeout).

    \b
    Examples:
      tuggle-agent put app.tar.gz
      tuggle-agent put build/app.tar.gz app-1.2.tar.gz --sync --node '^web' --wait all --timeout 10m
    """
    if (node or service or tag) and not sync:
        raise click.UsageError("--node, --service and --tag filter --sync: add --sync")
    name = name or os.path.basename(file)
    client = Agent(agent)
    params = {"sync": "", **{k: v for k, v in (("node", node), ("service", service), ("tag", tag)) if v}}
    headers = {"Content-Type": content_type} if content_type else {}
    with open(file, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        progress = Progress(f"put {name}", size, quiet=as_json)
        body = HashingReader(f, size, progress)
        r = client.request(
            "PUT", f"/{name}", ok=(201,), params=params if sync else None, data=body, headers=headers, timeout=600
        )
        progress.close()
    sent, stored = body.sha.hexdigest(), etag_sha256(r.headers)
    doc = {"name": name, "size": size, "sha256": stored, "id": r.headers.get("X-Tuggle-Object-Id"), "sync": sync}
    if stored != sent:
        raise ClientError(
            f"{name}: the agent stored sha256 {stored}, but the bytes read from {file} hash to {sent} "
            "(was the file changed while it was uploaded?)",
            CHECKSUM,
            doc,
        )
    if not as_json:
        click.echo(f"stored {name}: {size} bytes, sha256 {stored}")
    if wait_target is None:
        if as_json:
            emit_json(doc)
        return
    from .rollout import wait_for

    wait_for(client, name, wait_target, timeout, as_json, doc)


def check_content_range(value: str | None, start: int, size: int | None) -> int:
    """The total length from a 206's Content-Range, which must start at `start`."""
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", (value or "").strip())
    if not m or int(m.group(1)) != start or (size is not None and int(m.group(3)) != size):
        raise ClientError(f"the agent answered Range: bytes={start}- with Content-Range {value!r}; .part kept")
    return int(m.group(3))


def download(client: Agent, name: str, part: Path, quiet: bool) -> tuple[int, int, int, str, str]:
    """Append NAME to `part` (resumed with Range when it exists): (resumed from, bytes
    received, object size, sha256 of `part`, the object's sha256 from the ETag)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    r = client.request("GET", f"/{name}", ok=(200, 206, 416), headers=headers, stream=True, timeout=600)
    if r.status_code == 416:  # the .part is as long as the object or longer: not ours to trust
        r.close()
        have = 0
        r = client.request("GET", f"/{name}", ok=(200,), stream=True, timeout=600)
    expected = etag_sha256(r.headers)
    if not expected:
        raise ClientError(f"{client.url} sent {name} without an ETag: cannot verify it; nothing written")
    if r.status_code == 206:
        total = check_content_range(r.headers.get("Content-Range"), have, None)
    else:
        have, total = 0, int(r.headers.get("Content-Length", 0))
    sha = hashlib.sha256()
    if have:
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                sha.update(block)
    progress = Progress(f"get {name}", total, quiet=quiet, initial=have)
    received = 0
    try:
        with open(part, "ab" if have else "wb") as f:
            for block in r.iter_content(CHUNK):
                f.write(block)
                sha.update(block)
                received += len(block)
                progress.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # requests' connection errors are OSErrors too
        raise ClientError(f"download of {name} interrupted ({exc}); rerun to resume from {part}") from None
    progress.close()
    return have, received, total, sha.hexdigest(), expected


@click.command("get", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write it [./NAME].")
@client_command
def get_command(name, output, agent, as_json):
    """Download NAME through the local agent into FILE (-o, default ./NAME).

    Bytes go to FILE.part first; an existing FILE.part is resumed with a Range request
    (and downloaded again from the start if the resumed file does not verify).  The
    SHA-256 is checked against the object's (the ETag) before FILE.part is renamed to
    FILE; on a mismatch FILE.part is deleted and the exit code is 5.

    \b
    Examples:
      tuggle-agent get app.tar.gz
      tuggle-agent get app.tar.gz -o /srv/releases/app.tar.gz --json
    """
    out = Path(output or name)
    part = out.with_name(out.name + ".part")
    client = Agent(agent)
    have, received, total, got, expected = download(client, name, part, as_json)
    if got != expected and have:
        # The .part was of an older version of NAME, or damaged: start over, once.
        if not as_json:
            click.echo(f"{part}: the resumed bytes do not verify; downloading {name} from the start", err=True)
        part.unlink()
        have, received, total, got, expected = download(client, name, part, as_json)
    doc = {"name": name, "path": str(out), "size": have + received, "resumed_from": have, "received": received}
    if have + received != total:
        raise ClientError(f"{name}: got {have + received} of {total} bytes; rerun to resume from {part}", doc=doc)
    if got != expected:
        part.unlink()
        raise ClientError(
            f"{name}: checksum mismatch: the bytes hash to sha256 {got}, the object's is {expected}; "
            f"{part} deleted, nothing written to {out}",
            CHECKSUM,
            {**doc, "sha256": got, "expected_sha256": expected},
        )
    os.replace(part, out)
    doc["sha256"] = got
    if as_json:
        emit_json(doc)
    else:
        resumed = f" (resumed at byte {have})" if have else ""
        click.echo(f"{out}: {have + received} bytes{resumed}, sha256 {got} verified")
