"""The Consul agent config that wires tuggle-agent into Consul's own watches.

Two watches, both running `tuggle-agent handle-event --config <path>` (or, with
`--handler http`, posting to the node's /_tuggle/watch: no process per firing):
  key <ns>.changes  (kv_watch: changes, the default) the change-log: the node reconciles
                    the names changed since it last looked (durable sync and delete; a
                    node that was down catches up on its first run); each change costs
                    every node one small read, however many objects there are
  keyprefix <ns>/   (kv_watch: keyprefix) every metadata change re-reads the whole
                    prefix: for clusters with Go tuggle nodes, which write no change-log
  event <ns>        FETCH/DELETE user events: the fast path
Only keys Consul knows are written (consul-semantics 2.1), so a real agent loads it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..config import Config
from ..consul.keys import Keys

FILE_NAME = "tuggle-agent-watches.json"


def agent_executable() -> str:
    """The tuggle-agent to run from Consul: absolute, since Consul's PATH may differ."""
    exe = Path(sys.argv[0])
    if exe.name == "tuggle-agent" and exe.exists():
        return str(exe.resolve())
    beside = Path(sys.executable).parent / "tuggle-agent"  # the venv we run from
    if beside.exists():
        return str(beside)
    return shutil.which("tuggle-agent") or "tuggle-agent"


HANDLERS = ("script", "http")


def render(cfg: Config, config_path: str | os.PathLike, executable: str | None = None, handler: str = "script") -> dict:
    """script: Consul runs `tuggle-agent handle-event` (a process per firing);
    http: Consul POSTs the same JSON straight to the node's /_tuggle/watch."""
    if handler == "http":
        how = {
            "handler_type": "http",
            "http_handler_config": {
                "path": f"http://{cfg.local_host}:{cfg.port}/_tuggle/watch",
                "method": "POST",
                "timeout": "10s",
            },
        }
    else:
        how = {
            "handler_type": "script",
            "args": [executable or agent_executable(), "handle-event", "--config", str(Path(config_path).absolute())],
        }
    if cfg.kv_watch == "keyprefix":
        kv: dict = {"type": "keyprefix", "prefix": Keys(cfg.namespace).meta_prefix}
    else:
        kv = {"type": "key", "key": Keys(cfg.namespace).changes}
    return {"watches": [{**kv, **how}, {"type": "event", "name": cfg.namespace, **how}]}


def install(
    cfg: Config,
    config_path: str | os.PathLike,
    consul_config_dir: str | os.PathLike,
    executable: str | None = None,
    handler: str = "script",
) -> Path:
    out_dir = Path(consul_config_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / FILE_NAME
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tuggle-watches.")
    with os.fdopen(fd, "w") as f:
        json.dump(render(cfg, config_path, executable, handler), f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target
