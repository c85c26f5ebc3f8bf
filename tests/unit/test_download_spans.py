"""engine/download.py: what readers of a fetch in progress (a client, or a peer served with
sendfile) may see: verified bytes only, each reader on its own fd."""

import os

import pytest

from tuggle_agent.engine.download import Download, pread_spans
from tuggle_agent.engine.reads import PeerFile
from tuggle_agent.errors import BadSources
from tuggle_agent.objects.metadata import ObjectMeta


def download(tmp_path, body: bytes) -> Download:
    temp = tmp_path / "temp"
    temp.write_bytes(body)  # the fetch writes ahead of what it has verified
    return Download(ObjectMeta(name="a", size=len(body), sha256="a" * 64), temp)


def test_spans_cover_only_verified_bytes_and_survive_the_fetch_closing_its_fd(tmp_path):
    body = os.urandom(10_000)
    d = download(tmp_path, body)
    d.advance(4_000)
    spans = d.spans(1_000, 10_000, 1_500)
    first = [next(spans), next(spans)]
    assert [s[1:] for s in first] == [(1_000, 1_500), (2_500, 1_500)]
    d.finish(BadSources("the source died"))  # closes the fetch's own fd
    assert list(pread_spans(iter(first))) == [body[1_000:2_500], body[2_500:4_000]]  # ours is a dup
    with pytest.raises(BadSources, match="the source died"):
        next(spans)  # nothing past what was verified


def test_a_failed_fetch_gives_its_readers_the_verified_bytes_then_its_error(tmp_path):
    body = os.urandom(10_000)
    d = download(tmp_path, body)
    d.advance(6_000)
    chunks = d.read(0, 10_000, 4_096)
    got = next(chunks)
    d.finish(BadSources("every holder failed"))
    got += next(chunks)
    assert got == body[:6_000]
    with pytest.raises(BadSources, match="every holder failed"):
        next(chunks)
    late = download(tmp_path, body)
    late.finish(BadSources("gone before the reader came"))
    with pytest.raises(BadSources, match="gone before"):
        next(late.read(0, 10))


def test_peer_file_reads_spans_counts_its_position_and_releases_once(tmp_path):
    body = os.urandom(5_000)
    d = download(tmp_path, body)
    d.finish()
    released = []
    f = PeerFile(d.spans(1_000, 5_000, 1_500), 1_000, lambda: released.append(1))
    assert f.read(100) == body[1_000:2_500]  # a whole span, whatever size is asked
    assert f.tell() == 2_500
    sent = list(f.sendfile_spans())
    assert [s[1:] for s in sent] == [(2_500, 1_500), (4_000, 1_000)] and f.tell() == 5_000
    assert f.read() == b""
    f.close()
    f.close()
    assert released == [1]
