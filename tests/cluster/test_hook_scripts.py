"""The example hook scripts in hooks/: each runs as a real subprocess, the way tuggle-agent runs it
(argv list, TUGGLE_* environment, stdout+stderr merged), against real files and tarballs."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests import REPO
from tuggle_agent.harness import agent_env

HOOKS = REPO / "hooks"
# `#!/usr/bin/env python3` finds the interpreter running the tests first (a version manager's shim
# on PATH would cost ~100 ms a run); the scripts use only the standard library.
PATH = agent_env()["PATH"]


def tuggle_env(path: Path, **extra: str) -> dict[str, str]:
    """The environment tuggle-agent gives a hook for the object stored at `path`."""
    data = path.read_bytes() if path.exists() else b""
    env = {
        "PATH": PATH,
        "TUGGLE_NAME": path.name,
        "TUGGLE_PATH": str(path),
        "TUGGLE_ID": "5f1c2e9a-0c1d-4b8e-9a57-2a5e6b0f7d11",
        "TUGGLE_SIZE": str(len(data)),
        "TUGGLE_SHA256": hashlib.sha256(data).hexdigest(),
        "TUGGLE_CONTENT_TYPE": "application/gzip",
        "TUGGLE_SOURCE_NODE": "node1",
        "TUGGLE_NODE": "node2",
    }
    env.update(extra)
    return env


def run(script: str, *args: str, env: dict[str, str], interpreter: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*interpreter, str(HOOKS / script), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )


def obj(tmp_path: Path, name: str, content: bytes) -> Path:
    """A complete object in the agent's data dir."""
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- check-disk-space ----------------------------------------------------------------------------


def test_disk_space_passes_with_a_small_minimum(tmp_path):
    path = obj(tmp_path, "app.tar.gz", b"x" * 1000)
    for min_free in ("1048576", "1KiB", "500kB"):
        r = run("check-disk-space", min_free, env=tuggle_env(path))
        assert r.returncode == 0, r.stdout


def test_disk_space_refuses_when_minimum_exceeds_free_space(tmp_path):
    path = tmp_path / "data" / "app.tar.gz"  # pre_download: the object is not there yet
    path.parent.mkdir()
    free = shutil.disk_usage(tmp_path).free
    min_free = free + 2**40  # more than the filesystem has, even before the download
    r = run("check-disk-space", str(min_free), env=tuggle_env(path, TUGGLE_SIZE="4096"))
    assert r.returncode == 1
    last = r.stdout.strip().splitlines()[-1]  # the line the agent reports as the veto reason
    assert "refusing app.tar.gz" in last and f"({min_free} bytes)" in last and "(4096 bytes)" in last


def test_disk_space_counts_the_object_size(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    path = tmp_path / "deep" / "er" / "huge.img"  # directory does not exist yet: its ancestor's filesystem
    r = run("check-disk-space", "1MB", env=tuggle_env(path, TUGGLE_SIZE=str(free + 1)))
    assert r.returncode == 1 and "below the minimum of 976.6 KiB (1000000 bytes)" in r.stdout
    r = run("check-disk-space", "1MB", env=tuggle_env(path, TUGGLE_SIZE="1"))
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("args", [(), ("lots",), ("-5",), ("2XB",), ("1GiB", "extra")])
def test_disk_space_bad_argument_is_a_usage_error(tmp_path, args):
    r = run("check-disk-space", *args, env=tuggle_env(tmp_path / "x"))
    assert r.returncode == 2 and "usage: check-disk-space MIN_FREE" in r.stdout


# --- verify-checksum -----------------------------------------------------------------------------


def test_checksum_matches_published_digest(tmp_path):
    path = obj(tmp_path, "app.bin", b"release 1.4.2\n")
    r = run("verify-checksum", env=tuggle_env(path))
    assert r.returncode == 0 and hashlib.sha256(b"release 1.4.2\n").hexdigest() in r.stdout


def test_checksum_mismatch_prints_both_digests(tmp_path):
    path = obj(tmp_path, "app.bin", b"release 1.4.2\n")
    env = tuggle_env(path)
    good = env["TUGGLE_SHA256"]
    path.write_bytes(b"corrupted on disk\n")
    bad = hashlib.sha256(b"corrupted on disk\n").hexdigest()
    r = run("verify-checksum", env=env)
    assert r.returncode == 1 and good in r.stdout and bad in r.stdout and "MISMATCH" in r.stdout


def test_checksum_argument_overrides_published_digest(tmp_path):
    path = obj(tmp_path, "app.bin", b"build 7\n")
    env = tuggle_env(path)
    manifest = env["TUGGLE_SHA256"].upper()  # manifests may print upper-case hex
    assert run("verify-checksum", manifest, env={**env, "TUGGLE_SHA256": "0" * 64}).returncode == 0
    other = hashlib.sha256(b"build 8\n").hexdigest()
    r = run("verify-checksum", other, env=env)
    assert r.returncode == 1 and other in r.stdout and env["TUGGLE_SHA256"] in r.stdout


def test_checksum_usage_errors(tmp_path):
    path = obj(tmp_path, "app.bin", b"x")
    assert run("verify-checksum", "not-a-digest", env=tuggle_env(path)).returncode == 2
    assert run("verify-checksum", env=tuggle_env(path, TUGGLE_SHA256="")).returncode == 2
    r = run("verify-checksum", env=tuggle_env(tmp_path / "gone.bin", TUGGLE_SHA256="a" * 64))
    assert r.returncode == 2 and "cannot read" in r.stdout


# --- extract-tarball -----------------------------------------------------------------------------


def make_tarball(tmp_path: Path, name: str, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    """A real tarball in the data dir; `files` maps member names to contents."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for member, content in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return obj(tmp_path, name, buf.getvalue())


# Python before 3.11.4 has no tarfile extraction filters; the script then checks members itself.
WITHOUT_FILTERS = (
    sys.executable,
    "-c",
    "import runpy, sys, tarfile; del tarfile.data_filter; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
)


def release(tmp_path: Path, archive: Path, *args: str, filters: bool = True) -> subprocess.CompletedProcess:
    return run(
        "extract-tarball",
        str(tmp_path / "srv"),
        *args,
        env=tuggle_env(archive),
        interpreter=() if filters else WITHOUT_FILTERS,
    )


def releases(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "srv" / "releases"))


def current(tmp_path: Path) -> Path:
    link = tmp_path / "srv" / "current"
    assert link.is_symlink()
    return link.resolve()


@pytest.mark.parametrize("filters", [True, False], ids=["tarfile-filters", "no-tarfile-filters"])
def test_tarball_becomes_a_release_and_current_points_to_it(tmp_path, filters):
    archive = make_tarball(tmp_path, "app-1.0.tar.gz", {"bin/app": b"v1", "etc/app.conf": b"a=1"})
    r = release(tmp_path, archive, filters=filters)
    assert r.returncode == 0, r.stdout
    sha12 = hashlib.sha256(archive.read_bytes()).hexdigest()[:12]
    rel = tmp_path / "srv" / "releases" / f"app-1.0-{sha12}"
    assert releases(tmp_path) == [rel.name]  # no temporary directory left behind
    assert current(tmp_path) == rel
    assert (tmp_path / "srv" / "current" / "bin" / "app").read_bytes() == b"v1"
    assert os.readlink(tmp_path / "srv" / "current") == f"releases/{rel.name}"  # relative link


@pytest.mark.parametrize("name,mode", [("site.tgz", "w:gz"), ("site.tar", "w")])
def test_tgz_and_plain_tar(tmp_path, name, mode):
    archive = make_tarball(tmp_path, name, {"index.html": b"<h1>hi</h1>"}, mode)
    assert release(tmp_path, archive).returncode == 0
    assert current(tmp_path).name.startswith("site-")
    assert (current(tmp_path) / "index.html").read_bytes() == b"<h1>hi</h1>"


def test_second_release_switches_current_and_rerun_is_idempotent(tmp_path):
    v1 = make_tarball(tmp_path, "app-1.tar.gz", {"VERSION": b"1"})
    v2 = make_tarball(tmp_path, "app-2.tar.gz", {"VERSION": b"2"})
    assert release(tmp_path, v1).returncode == 0
    first = current(tmp_path)
    assert release(tmp_path, v2).returncode == 0
    assert current(tmp_path) != first and (tmp_path / "srv/current/VERSION").read_bytes() == b"2"
    assert len(releases(tmp_path)) == 2
    r = release(tmp_path, v2)  # the same object again: nothing new
    assert r.returncode == 0 and "already extracted" in r.stdout
    assert len(releases(tmp_path)) == 2 and (tmp_path / "srv/current/VERSION").read_bytes() == b"2"
    assert release(tmp_path, v1).returncode == 0  # rollback re-uses the old release directory
    assert current(tmp_path) == first and len(releases(tmp_path)) == 2


def test_old_releases_are_pruned_to_keep(tmp_path):
    names = []
    for i in range(1, 6):
        assert (
            release(
                tmp_path, make_tarball(tmp_path, f"app-{i}.tar.gz", {"VERSION": b"%d" % i}), "--keep", "2"
            ).returncode
            == 0
        )
        names.append(current(tmp_path).name)
    assert releases(tmp_path) == sorted(names[-2:])
    assert (tmp_path / "srv/current/VERSION").read_bytes() == b"5"
    # A rollback to a kept release makes it the newest; the next deploy prunes the other one.
    assert release(tmp_path, tmp_path / "data" / "app-4.tar.gz", "--keep", "2").returncode == 0
    assert release(tmp_path, make_tarball(tmp_path, "app-6.tar.gz", {"VERSION": b"6"}), "--keep", "2").returncode == 0
    assert releases(tmp_path) == sorted([names[3], current(tmp_path).name])


def test_keep_one_never_removes_current(tmp_path):
    for i in (1, 2):
        assert (
            release(tmp_path, make_tarball(tmp_path, f"a{i}.tar", {"f": b"%d" % i}, "w"), "--keep", "1").returncode == 0
        )
    assert releases(tmp_path) == [current(tmp_path).name]


def evil_dotdot(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("../evil")
    info.size = 4
    tar.addfile(info, io.BytesIO(b"pwnd"))


def evil_symlink(tar: tarfile.TarFile) -> None:
    link = tarfile.TarInfo("escape")
    link.type, link.linkname = tarfile.SYMTYPE, "../../.."
    tar.addfile(link)
    info = tarfile.TarInfo("escape/evil")
    info.size = 4
    tar.addfile(info, io.BytesIO(b"pwnd"))


def evil_absolute(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("/tmp/evil")
    info.size = 4
    tar.addfile(info, io.BytesIO(b"pwnd"))


@pytest.mark.parametrize("filters", [True, False], ids=["tarfile-filters", "no-tarfile-filters"])
@pytest.mark.parametrize("build", [evil_dotdot, evil_symlink, evil_absolute])
def test_malicious_tarball_is_refused_and_nothing_escapes(tmp_path, build, filters):
    good = make_tarball(tmp_path, "app-1.tar.gz", {"VERSION": b"1"})
    assert release(tmp_path, good, filters=filters).returncode == 0
    before = current(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("README"), io.BytesIO(b""))  # harmless members come first
        build(tar)
    bad = obj(tmp_path, "app-2.tar.gz", buf.getvalue())
    r = release(tmp_path, bad, filters=filters)
    assert r.returncode == 1 and "refusing unsafe archive" in r.stdout
    assert current(tmp_path) == before  # current untouched, no half release, no temp dir
    assert releases(tmp_path) == [before.name]
    found = [p for p in tmp_path.rglob("evil")] + [p for p in Path("/tmp").glob("evil") if p.read_bytes() == b"pwnd"]
    assert found == []


@pytest.mark.parametrize("filters", [True, False], ids=["tarfile-filters", "no-tarfile-filters"])
def test_links_inside_the_release_are_kept(tmp_path, filters):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("lib/v1/app.so")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"so"))
        link = tarfile.TarInfo("lib/current")
        link.type, link.linkname = tarfile.SYMTYPE, "v1"
        tar.addfile(link)
    assert release(tmp_path, obj(tmp_path, "lib.tar.gz", buf.getvalue()), filters=filters).returncode == 0
    assert (tmp_path / "srv/current/lib/current/app.so").read_bytes() == b"so"


def test_not_a_tarball_is_skipped(tmp_path):
    path = obj(tmp_path, "notes.txt", b"hello")
    r = release(tmp_path, path)
    assert r.returncode == 0 and "skipping notes.txt" in r.stdout
    assert not (tmp_path / "srv" / "current").exists()


def test_corrupt_tarball_fails_without_switching(tmp_path):
    path = obj(tmp_path, "app.tar.gz", b"\x1f\x8b not really gzip")
    r = release(tmp_path, path)
    assert r.returncode == 1 and "cannot extract" in r.stdout
    assert releases(tmp_path) == [] and not (tmp_path / "srv" / "current").exists()


def test_extract_tarball_usage_errors(tmp_path):
    archive = make_tarball(tmp_path, "app.tar.gz", {"f": b"x"})
    assert run("extract-tarball", env=tuggle_env(archive)).returncode == 2
    assert release(tmp_path, archive, "--keep", "0").returncode == 2


# --- notify --------------------------------------------------------------------------------------


def test_notify_logs_one_line_and_appends_to_file(tmp_path):
    path = obj(tmp_path, "app.tar.gz", b"payload")
    env = tuggle_env(path)
    log = tmp_path / "notify.log"
    r = run("notify", "post_download", env={**env, "TUGGLE_NOTIFY_LOG": str(log)})
    line = (
        f"tuggle notify: event=post_download node=node2 name=app.tar.gz size=7 "
        f"sha256={env['TUGGLE_SHA256']} source=node1"
    )
    assert r.returncode == 0 and r.stdout == line + "\n"
    run("notify", "post_download", env={**env, "TUGGLE_NOTIFY_LOG": str(log)})
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    stamp, rest = lines[0].split(" ", 1)
    assert rest == line and len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T"


def test_notify_never_fails(tmp_path):
    env = tuggle_env(
        tmp_path / "gone.bin", TUGGLE_SOURCE_NODE="", TUGGLE_NOTIFY_LOG=str(tmp_path / "no" / "such" / "dir" / "log")
    )
    r = run("notify", env=env)
    assert r.returncode == 0
    assert r.stdout.startswith("tuggle notify: node=node2 name=gone.bin ") and "source=-" in r.stdout
    assert "warning: cannot append" in r.stdout
