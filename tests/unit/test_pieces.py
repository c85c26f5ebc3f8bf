"""Piece digests: what makes streamed and relayed bytes trustworthy."""

import hashlib
import io
import os

import blake3
import pytest

from tuggle_agent.objects.metadata import ObjectMeta, PieceList, piece_size_for
from tuggle_agent.objects.verify import BackgroundDigester, Digester, PieceMismatch, Verifier


def make(body: bytes, piece: int, algorithm: str = "sha256"):
    d = Digester(piece, algorithm)
    d.update(body)
    sha, digests = d.finish()
    assert sha == hashlib.sha256(body).hexdigest()
    return ObjectMeta(name="x", size=len(body), sha256=sha, piece_size=piece), PieceList(piece, digests, algorithm)


def test_piece_digests_use_the_named_algorithm_and_the_whole_digest_stays_sha256():
    body = os.urandom(3 * 4096 + 5)
    meta, pieces = make(body, 4096, "blake3")
    assert pieces.digests[1] == blake3.blake3(body[4096:8192]).hexdigest()
    assert pieces.digests[3] == blake3.blake3(body[3 * 4096 :]).hexdigest()
    assert meta.sha256 == hashlib.sha256(body).hexdigest()
    sha_list = PieceList(4096, pieces.digests, "sha256")  # the same digests read as SHA-256 do not verify
    with pytest.raises(PieceMismatch, match=r"piece 0 .*SHA-256"):
        Verifier(meta, sha_list).feed(body)


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
@pytest.mark.parametrize("size", [0, 1, 1000, 4096, 4097, 3 * 4096 + 5])
@pytest.mark.parametrize("chunk", [1, 999, 4096, 10_000])
def test_good_bytes_verify_in_any_chunking(size, chunk, algorithm):
    body = os.urandom(size)
    meta, pieces = make(body, 4096, algorithm)
    v = Verifier(meta, pieces)
    seen = []
    for i in range(0, size, chunk):
        v.feed(body[i : i + chunk])
        seen.append(v.verified)
    v.finish_empty()
    assert v.complete and v.verified == size
    assert all(s < size or i == len(seen) - 1 for i, s in enumerate(seen)), "the last piece is held back until the end"


@pytest.mark.parametrize("algorithm", ["sha256", "blake3"])
def test_a_bad_piece_is_caught_before_it_counts_and_rewind_resumes(algorithm):
    body = os.urandom(5 * 4096)
    meta, pieces = make(body, 4096, algorithm)
    bad = body[: 2 * 4096] + b"\0" * 10 + body[2 * 4096 + 10 :]
    v = Verifier(meta, pieces)
    f = io.BytesIO()
    with pytest.raises(PieceMismatch, match="piece 2"):
        for i in range(0, len(bad), 3000):
            f.write(bad[i : i + 3000])
            v.feed(bad[i : i + 3000])
    assert v.verified == 2 * 4096
    v.rewind(f)
    assert f.getvalue() == body[: 2 * 4096] and v.received == 2 * 4096
    rest = body[v.received :]
    f.write(rest)
    v.feed(rest)
    assert v.complete and f.getvalue() == body


def test_too_many_bytes_and_wrong_whole_digest_are_refused():
    body = os.urandom(5000)
    meta, pieces = make(body, 4096)
    with pytest.raises(PieceMismatch):
        Verifier(meta, pieces).feed(body + b"x")
    meta.sha256 = "0" * 64
    with pytest.raises(PieceMismatch, match="whole-object"):
        Verifier(meta, pieces).feed(body)


def test_piece_size_keeps_piece_count_bounded():
    assert piece_size_for(0) == 64 * 1024
    assert piece_size_for(2**30) * 1024 >= 2**30
    assert piece_size_for(2**30) == 2**20
    assert piece_size_for(2**40) == 2**30


def test_background_digester_gives_the_digests_of_the_bytes_in_order():
    blocks = [os.urandom(n) for n in (1, 70_000, 4096, 300_000, 5)]
    direct = Digester(65_536, "blake3")
    for b in blocks:
        direct.update(b)
    with BackgroundDigester(Digester(65_536, "blake3"), depth=2) as bg:
        for b in blocks:
            bg.update(b)
        assert bg.size == sum(map(len, blocks))
        assert bg.finish() == direct.finish()


def test_background_digester_reports_a_failure_and_its_thread_ends_on_any_exit():
    class Broken(Digester):
        def update(self, data):
            raise MemoryError("no room")

    bg = BackgroundDigester(Broken(4096))
    bg.update(b"x" * 10)
    with pytest.raises(MemoryError, match="no room"):
        bg.finish()
    with pytest.raises(RuntimeError), BackgroundDigester(Digester(4096)) as bg2:
        bg2.update(b"y")
        raise RuntimeError("the upload failed")
    assert not bg2._thread.is_alive()
