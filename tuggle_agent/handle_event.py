"""`tuggle-agent handle-event`: the handler Consul's watches run.

Consul writes the watch result as JSON on stdin: a list of KV entries (keyprefix
watch), a list of user events (event watch), or `null` (no keys under the prefix).
The handler must return quickly, since Consul waits for it and queues later changes,
so downloads are handed to the running `serve` process, which owns the queue.
Consul re-delivers old events (first run, reload, errors), so handled event IDs are
remembered in the data dir under a file lock; a replayed event does nothing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import click

from .eventpayload import parse
from .cliopts import load_from_flags, setup_logging
from .store import LocalStore

log = logging.getLogger("tuggle_agent.handle_event")
REMEMBER = 2048


class BadInput(ValueError):
    pass


class HandlerError(RuntimeError):
    pass


def classify(data) -> str:
    """'kv', 'events' or 'empty' — or BadInput saying what was expected."""
    if data is None:
        return "kv"  # a keyprefix watch with no keys under the prefix
    if not isinstance(data, list):
        raise BadInput(f"expected a JSON list (Consul keyprefix or event watch output) or null, got {type(data).__name__}")
    if not data:
        return "empty"
    if all(isinstance(e, dict) and "Key" in e and "ModifyIndex" in e for e in data):
        return "kv"
    if all(isinstance(e, dict) and "ID" in e and "Name" in e and "LTime" in e for e in data):
        return "events"
    raise BadInput("expected a list of KV entries (with Key, ModifyIndex) or of user events (with ID, Name, LTime)")


class HandledEvents:
    """Event IDs already acted on, persisted in <data_dir>/.tuggle/events.json."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "events.json"
        self.lock_path = state_dir / "events.lock"

    @contextmanager
    def locked(self):
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two handler processes at once take turns
            try:
                ids = json.loads(self.path.read_text()) if self.path.exists() else []
            except ValueError:
                ids = []
            seen = list(ids)
            yield seen
            if seen != ids:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(seen[-REMEMBER:]))
                tmp.replace(self.path)


class Handler:
    def __init__(self, cfg):
        self.cfg = cfg
        host = "127.0.0.1" if cfg.bind in ("0.0.0.0", "::", "") else cfg.bind
        self.base = f"http://{host}:{cfg.port}/_tuggle"
        self.store = LocalStore(cfg.data_dir)

    def post(self, path: str, **params) -> str:
        """POST to the local serve process; its answer text, or HandlerError."""
        url = f"{self.base}/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10) as r:
                return r.read().decode(errors="replace").strip().replace("\n", " ")
        except urllib.error.HTTPError as exc:
            raise HandlerError(f"the local tuggle-agent answered {exc.code} to {path}: "
                               f"{exc.read().decode(errors='replace').strip()}") from None
        except OSError as exc:
            raise HandlerError(f"could not reach the local tuggle-agent at {self.base} ({exc}); is `tuggle-agent "
                               "serve` running? It reconciles with Consul when it starts, so nothing is lost.") from None

    def reconcile(self) -> None:
        log.info("reconciled with Consul KV: %s", self.post("reconcile"))

    def events(self, events: list[dict]) -> None:
        handled = HandledEvents(self.store.state)
        with handled.locked() as seen:
            for raw in events:
                if raw.get("Name") != self.cfg.namespace:
                    continue
                ev = parse(raw)
                if ev is None:
                    log.warning("ignoring event %s: payload is not a tuggle FETCH/DELETE", raw.get("ID"))
                    continue
                if ev.event_id in seen:
                    log.debug("skipping %s event %s: handled before (Consul replays its buffer)", ev.verb, ev.event_id)
                    continue
                log.info("acting on %s event %s", ev.verb, ev.event_id)
                self.act(ev)
                seen.append(ev.event_id)

    def act(self, ev) -> None:
        answer = self.post("event", verb=ev.verb, id=ev.object_id, version=ev.version)
        log.info("%s event %s (object %s, version %s): %s", ev.verb, ev.event_id, ev.object_id, ev.version, answer)


def _log_to_data_dir(cfg) -> None:
    """Consul keeps only 4 KiB of a handler's output, at DEBUG: keep our own record."""
    state = Path(cfg.data_dir) / ".tuggle"
    state.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(state / "handle-event.log")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s handle-event[%(process)d]: %(message)s"))
    logging.getLogger("tuggle_agent").addHandler(h)


@click.command("handle-event")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="TUGGLE_CONFIG",
              help="The node's YAML config (the same file `serve` uses).")
def handle_event_command(config_path):
    """Handle a Consul watch's output on stdin (run by Consul, or by hand).

    \b
    Examples (what Consul runs, and how to try it by hand):
      consul watch -type=event -name=tuggle tuggle-agent handle-event --config /etc/tuggle-agent.yaml
      consul watch -type=keyprefix -prefix=tuggle/ tuggle-agent handle-event --config /etc/tuggle-agent.yaml
      echo null | tuggle-agent handle-event --config config/tuggle.yaml
    """
    cfg = load_from_flags(config_path)
    setup_logging(cfg.log_level)
    _log_to_data_dir(cfg)
    text = sys.stdin.read()
    try:
        data = json.loads(text)
        kind = classify(data)
    except (ValueError, BadInput) as exc:
        raise click.ClickException(
            f"stdin is not a Consul watch result ({exc}); expected what a keyprefix or event watch sends. Nothing was changed.")
    handler = Handler(cfg)
    try:
        if kind == "kv":
            handler.reconcile()
        elif kind == "events":
            handler.events(data)
    except HandlerError as exc:
        raise click.ClickException(str(exc)) from None
