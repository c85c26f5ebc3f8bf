"""Hooks as real processes: a timed-out hook dies with everything it started, and a
hook printing without end is read with a bounded buffer and still completes."""

import hashlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from tuggle_agent.config import Hook
from tuggle_agent.engine import hooks as hooks_mod
from tuggle_agent.engine.hooks import OUTPUT_LIMIT, run_hooks
from tuggle_agent.objects.metadata import ObjectMeta

META = ObjectMeta(name="obj.bin", size=1, sha256=hashlib.sha256(b"x").hexdigest())


def wait_group_dead(pgid: int) -> None:
    """No process of the group may run on: SIGKILL is sent before run_hooks returns, so
    none may be alive moments later (a kill takes effect when the process is next
    scheduled); then init reaps the orphans' zombies and the group is gone entirely."""
    deadline = time.monotonic() + 2
    while live_members(pgid):
        assert time.monotonic() < deadline, f"still alive in group {pgid}: {live_members(pgid)}"
        time.sleep(0.02)
    deadline = time.monotonic() + 15
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process group {pgid} still exists"
        time.sleep(0.05)


def live_members(pgid: int) -> list[str]:
    """Processes of the group that are not zombies (a zombie is dead, just not reaped yet)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        state, _ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            alive.append(text[:60])
    return alive


def test_timed_out_hook_is_killed_with_its_whole_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"echo $$ > {pidfile}; sleep 1000 & echo started; sleep 1000"
    hook = Hook(("sh", "-c", script), timeout=1.0)
    start = time.monotonic()
    [result] = run_hooks("pre_download", (hook,), META, {})
    elapsed = time.monotonic() - start
    pgid = int(pidfile.read_text())
    assert result.returncode is None and not result.ok
    assert "timed out after 1s" in result.output and "started" in result.output
    assert elapsed < 1.0 + 2 * hooks_mod.KILL_GRACE + 1.0
    wait_group_dead(pgid)


def test_hook_that_exits_but_leaves_a_child_holding_its_output_is_bounded_by_the_timeout(tmp_path):
    pidfile = tmp_path / "pid"
    hook = Hook(("sh", "-c", f"echo $$ > {pidfile}; sleep 1000 & exit 0"), timeout=1.0)
    [result] = run_hooks("post_download", (hook,), META, {})
    assert result.returncode is None and "timed out" in result.output
    wait_group_dead(int(pidfile.read_text()))


def test_term_is_sent_before_kill(tmp_path):
    """A hook that traps SIGTERM gets to clean up within the grace period."""
    marker = tmp_path / "cleaned"
    script = f"trap 'echo cleanup; touch {marker}; exit 3' TERM; while :; do sleep 0.05; done"
    [result] = run_hooks("pre_download", (Hook(("sh", "-c", script), timeout=0.5),), META, {})
    assert marker.exists() and "cleanup" in result.output and result.returncode is None


def test_fifty_megabytes_of_output_are_bounded_and_the_hook_completes():
    code = (
        "import sys\n"
        "block = b'x' * 1023 + b'\\n'\n"
        "for _ in range(50 * 1024): sys.stdout.buffer.write(block)\n"
        "print('last line', flush=True)\n"
        "sys.exit(4)\n"
    )
    tracemalloc.start()
    try:
        [result] = run_hooks("pre_download", (Hook((sys.executable, "-c", code), timeout=60),), META, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.returncode == 4
    assert result.describe().endswith("exited 4: last line")
    assert len(result.output) <= OUTPUT_LIMIT + 100
    assert result.output.startswith("[") and "earlier bytes of output dropped]\n" in result.output
    assert peak < 4 * OUTPUT_LIMIT + 2**20, f"peak Python allocation {peak} bytes while reading the output"


def test_exit_code_and_last_line_reported_as_before():
    ok = Hook(("sh", "-c", "echo one; echo two"), timeout=10)
    bad = Hook(("sh", "-c", "echo reason >&2; exit 2"), timeout=10)
    never = Hook(("sh", "-c", "echo never"), timeout=10)
    results = run_hooks("pre_download", (ok, bad, never), META, {})
    assert [r.returncode for r in results] == [0, 2]  # stops at the first failure
    assert results[0].output == "one\ntwo\n" and results[0].ok
    assert results[1].describe() == "hook `sh -c echo reason >&2; exit 2` exited 2: reason"


def test_missing_command_reported():
    [result] = run_hooks("pre_download", (Hook(("/nonexistent/hook",), timeout=5),), META, {})
    assert result.returncode is None and "cannot run '/nonexistent/hook'" in result.output


@pytest.mark.parametrize("env_key", ["TUGGLE_NAME"])
def test_environment_passed(env_key):
    [result] = run_hooks(
        "pre_download", (Hook(("sh", "-c", f"echo ${env_key}"), timeout=5),), META, {env_key: "obj.bin"}
    )
    assert result.output == "obj.bin\n"
