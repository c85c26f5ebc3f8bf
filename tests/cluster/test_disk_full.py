"""A full disk loses nothing: no half file, no metadata, no holder tag."""

import os
import subprocess

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until

MiB = 2**20


@pytest.fixture
def small_disk_cluster(tmp_path):
    data = tmp_path / "node2" / "data"
    data.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(data)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs as node2's data dir")
    try:
        with TuggleCluster(tmp_path, nodes=2) as c:
            yield c
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


def test_upload_and_fetch_on_a_full_disk_leave_nothing(small_disk_cluster, unique_name):
    n1, n2 = small_disk_cluster.agents
    name = unique_name()
    r = n2.put(name, os.urandom(8 * MiB))
    assert r.status_code == 507 and "no space left" in r.text, (r.status_code, r.text)
    assert n1.get(name).status_code == 404, "a failed upload must not create the object"
    assert list((n2.data_dir / ".tmp").iterdir()) == []

    big = unique_name()
    n1.put(big, os.urandom(8 * MiB))
    try:
        r = n2.get(big)
        assert r.status_code == 507, r.status_code  # refused before any byte
    except requests.exceptions.ChunkedEncodingError:
        pass  # or cut off mid-stream: a broken transfer, never a short "complete" file
    wait_until(lambda: list((n2.data_dir / ".tmp").iterdir()) == [], 10, what="temp file removed")
    assert not n2.local_file(big).exists()
    assert small_disk_cluster.holders(big) == {"node1"}
    assert "No space left" in n2.log() or "no space" in n2.log().lower()
    # and the node still works for what fits
    small = unique_name()
    n1.put(small, b"fits")
    assert n2.get(small).content == b"fits"
