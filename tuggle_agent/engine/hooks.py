"""Operator hooks around downloads and deletes: argv commands, no shell, with a timeout.

Hooks see the object through TUGGLE_* environment variables; their output goes to
the agent log line by line.  A pre_download hook that exits non-zero vetoes the
download, with its output as the reason.

Invariants:
- a hook runs in a process group of its own; when its timeout passes (its command
  still running, or something it started still holding its output open) the whole
  group gets SIGTERM, then SIGKILL after KILL_GRACE, so nothing it started outlives it;
- its output (stdout and stderr together) is read as it comes and only the last
  OUTPUT_LIMIT bytes are kept: a hook printing gigabytes neither fills memory nor
  blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import metrics
from ..config import Hook
from ..objects.metadata import ObjectMeta

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 64 * 1024  # bytes of a hook's output kept: its tail, where the error usually is
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a timed-out hook's group


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
        "TUGGLE_NAME": meta.name,
        "TUGGLE_PATH": str(path),
        "TUGGLE_ID": meta.id,
        "TUGGLE_SIZE": str(meta.size),
        "TUGGLE_SHA256": meta.sha256,
        "TUGGLE_CONTENT_TYPE": meta.content_type,
        "TUGGLE_SOURCE_NODE": source,
        "TUGGLE_NODE": node,
    }


def run_hooks(
    kind: str, hooks: tuple[Hook, ...], meta: ObjectMeta, env: dict[str, str], cwd: Path | None = None
) -> list[HookResult]:
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
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        result = HookResult(hook, None, f"cannot run {cmd[0]!r}: {exc.strerror}")
        outcome = "failed"
    else:
        with proc:
            out, finished = _collect(proc, time.monotonic() + hook.timeout)
            if not finished:
                _kill_group(proc)
                out += _drain(proc)
        output = _tail_text(out)
        if finished:
            result = HookResult(hook, proc.returncode, output)
            outcome = "ok" if result.ok else "failed"
        else:
            result = HookResult(hook, None, f"{output}timed out after {hook.timeout:g}s; its process group was killed")
            outcome = "timeout"
    metrics.HOOK_RUNS.labels(kind, outcome).inc()
    for line in result.output.splitlines():
        log.info("%s hook %s: %s", kind, cmd[0], line)
    if result.ok:
        log.info("%s hook `%s` ok", kind, " ".join(cmd))
    else:
        log.warning("%s %s", kind, result.describe())
    return result


class _Tail:
    """The last OUTPUT_LIMIT bytes written to it, and how many bytes came before them."""

    def __init__(self):
        self.buf = bytearray()
        self.dropped = 0

    def __iadd__(self, data: bytes) -> _Tail:
        self.buf += data
        # Trim in batches (not on every read) so copying stays linear in the output.
        if len(self.buf) > 2 * OUTPUT_LIMIT:
            cut = len(self.buf) - OUTPUT_LIMIT
            self.dropped += cut
            del self.buf[:cut]
        return self


def _collect(proc: subprocess.Popen, deadline: float) -> tuple[_Tail, bool]:
    """Read the hook's output until EOF and its exit, or until `deadline`.
    Returns the output's tail and whether the hook finished in time."""
    out = _Tail()
    assert proc.stdout is not None  # started with stdout=PIPE
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out, False
            if sel.select(remaining):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:  # closed its output but kept running
        return out, False
    return out, True


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the hook's process group; SIGKILL it once the hook has exited or after
    KILL_GRACE.  The group id is the hook's pid (start_new_session).  The hook is reaped
    only after the SIGKILL: until then its pid, and so the group id, cannot be reused,
    so neither signal can reach an unrelated process."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    # WNOWAIT: see the exit without reaping (the zombie keeps the group id ours).
    while os.waitid(os.P_PID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    # SIGKILL cannot be ignored, but takes effect when each process is next scheduled,
    # and orphans stay (as zombies) in the group until init reaps them: wait a little
    # so that, normally, the group is gone when the hook's result is reported.
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)


def _drain(proc: subprocess.Popen) -> bytes:
    """What the killed group left in the pipe, without blocking: a process that left
    the group (setsid) may still hold the pipe open."""
    assert proc.stdout is not None  # started with stdout=PIPE
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    data = bytearray()
    try:
        while len(data) <= OUTPUT_LIMIT and (chunk := os.read(fd, 65536)):
            data += chunk
    except BlockingIOError:
        pass
    return bytes(data[-OUTPUT_LIMIT:])


def _tail_text(out: _Tail) -> str:
    data, dropped = bytes(out.buf[-OUTPUT_LIMIT:]), out.dropped + max(0, len(out.buf) - OUTPUT_LIMIT)
    if not dropped:
        return data.decode(errors="replace")
    # Start at a line boundary so the first kept line is not a fragment.
    newline = data.find(b"\n")
    if 0 <= newline < len(data) - 1:
        dropped += newline + 1
        data = data[newline + 1 :]
    return f"[{dropped} earlier bytes of output dropped]\n" + data.decode(errors="replace")
