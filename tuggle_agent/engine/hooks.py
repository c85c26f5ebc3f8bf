"""Operator hooks around downloads and deletes: argv commands, no shell, with a timeout.

Hooks see the object through TUGGLE_* environment variables; their output goes to
the agent log line by line.  A pre_download hook that exits non-zero vetoes the
download, with its output as the reason.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..config import Hook
from ..objects.metadata import ObjectMeta

log = logging.getLogger(__name__)


@dataclass
class HookResult:
    hook: Hook
    returncode: int | None  # None: timed out or could not start
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        cmd = " ".join(self.hook.command)
        if self.returncode is None:
            return f"hook `{cmd}` failed: {self.output.strip()}"
        tail = self.output.strip().splitlines()[-1:] or [""]
        return f"hook `{cmd}` exited {self.returncode}: {tail[0]}"


def hook_env(meta: ObjectMeta, path: Path, node: str, source: str = "") -> dict[str, str]:
    return {
        "TUGGLE_NAME": meta.name, "TUGGLE_PATH": str(path), "TUGGLE_ID": meta.id,
        "TUGGLE_SIZE": str(meta.size), "TUGGLE_SHA256": meta.sha256,
        "TUGGLE_CONTENT_TYPE": meta.content_type, "TUGGLE_SOURCE_NODE": source, "TUGGLE_NODE": node,
    }


def run_hooks(kind: str, hooks: tuple[Hook, ...], meta: ObjectMeta, env: dict[str, str],
              cwd: Path | None = None) -> list[HookResult]:
    """Run the hooks that match the name, in order; stop at the first failure."""
    results = []
    for hook in hooks:
        if not hook.applies_to(meta.name):
            continue
        result = _run(kind, hook, {**os.environ, **env}, cwd)
        results.append(result)
        if not result.ok:
            break
    return results


def _run(kind: str, hook: Hook, env: dict[str, str], cwd: Path | None) -> HookResult:
    cmd = list(hook.command)
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=hook.timeout, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        out = (exc.output or b"").decode(errors="replace")
        result = HookResult(hook, None, f"{out}timed out after {hook.timeout:g}s")
    except OSError as exc:
        result = HookResult(hook, None, f"cannot run {cmd[0]!r}: {exc.strerror}")
    else:
        result = HookResult(hook, proc.returncode, proc.stdout.decode(errors="replace"))
    for line in result.output.splitlines():
        log.info("%s hook %s: %s", kind, cmd[0], line)
    if result.ok:
        log.info("%s hook `%s` ok", kind, " ".join(cmd))
    else:
        log.warning("%s %s", kind, result.describe())
    return result
