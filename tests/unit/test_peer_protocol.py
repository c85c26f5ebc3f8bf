"""What a fetcher accepts from a holder: exact Content-Range, the right version, no drip."""

import os

import pytest

from tuggle_agent.consul.health import Holder
from tuggle_agent.engine.peer import BLOCK, CorruptSource, PeerClient, RateFloor, SourceError, blocks, content_range
from tuggle_agent.objects.metadata import ObjectMeta

META = ObjectMeta(name="a", size=1000, sha256="a" * 64, version="v1")
HOLDER = Holder("n2", "127.0.0.1", 1)


class Answer:
    def __init__(self, status: int, **headers):
        self.status_code = status
        self.headers = headers


def test_content_range_is_inclusive():
    assert content_range(0, 1000, 1000) == "bytes 0-999/1000"
    assert content_range(999, 1000, 1000) == "bytes 999-999/1000"


def test_206_must_start_exactly_at_the_offset_asked_for():
    ok = Answer(206, **{"Content-Range": "bytes 100-999/1000"})
    assert PeerClient._check_answer(HOLDER, META, 100, ok) == 0
    for bad in ("bytes 99-999/1000", "bytes 101-999/1000", "bytes 100-998/1000", "bytes 100-999/1001", None):
        with pytest.raises(SourceError):
            PeerClient._check_answer(HOLDER, META, 100, Answer(206, **{"Content-Range": bad}))


def test_200_means_skip_what_we_have():
    assert PeerClient._check_answer(HOLDER, META, 300, Answer(200)) == 300


def test_redirects_and_errors_are_source_errors():
    for status in (301, 302, 307, 404, 500, 503):
        with pytest.raises(SourceError):
            PeerClient._check_answer(HOLDER, META, 0, Answer(status, Location="http://elsewhere/"))


def test_another_version_is_corrupt_source():
    with pytest.raises(CorruptSource):
        PeerClient._check_answer(HOLDER, META, 0, Answer(200, ETag='"' + "b" * 64 + '"'))
    assert PeerClient._check_answer(HOLDER, META, 0, Answer(200, ETag='"' + "a" * 64 + '"')) == 0


def test_rate_floor_drops_a_drip_but_not_a_slow_start():
    floor = RateFloor(min_rate=1000, window=5.0)
    floor.observe(2.0, 10)  # window not full yet: no judgement
    with pytest.raises(SourceError, match="below min_source_rate"):
        floor.observe(3.0, 10)  # 20 bytes in 5 s


def test_rate_floor_accepts_a_steady_source():
    floor = RateFloor(min_rate=1000, window=1.0)
    for _ in range(100):
        floor.observe(0.1, 200)  # 2000 B/s


def scripted_recv(body: bytes, sizes: list[int]):
    """recv_into(view) over `body`, each call bringing at most the next of `sizes` (like
    TCP), and recording how much room each call offered."""
    state = {"pos": 0, "i": 0, "asked": []}

    def recv_into(view) -> int:
        state["asked"].append(len(view))
        take = min(len(view), sizes[state["i"] % len(sizes)])
        state["i"] += 1
        out = body[state["pos"] : state["pos"] + take]
        view[: len(out)] = out
        state["pos"] += len(out)
        return len(out)

    return recv_into, state


@pytest.mark.parametrize("sizes", [[1], [1448], [70_000, 3], [BLOCK * 3]])
@pytest.mark.parametrize("offset", [0, 5, 65_536])
def test_blocks_end_at_every_piece_end_and_rebuild_the_body(sizes, offset):
    piece = 65_536
    body = os.urandom(5 * piece + 123)
    recv, _ = scripted_recv(body[offset:], sizes)
    got, pos = [], offset
    for block in blocks(recv, 0, offset, piece):
        data = bytes(block)  # a view of a reused buffer: copy before asking for the next
        # A complete piece is handed on at once: no block runs past the end of a piece.
        assert (pos // piece + 1) * piece >= pos + len(data), f"block {pos}+{len(data)} holds back a piece end"
        pos += len(data)
        got.append(data)
    assert b"".join(got) == body[offset:]


def test_blocks_are_at_most_block_bytes_within_large_pieces():
    piece = 4 * BLOCK
    body = os.urandom(piece + 10)
    recv, _ = scripted_recv(body, [BLOCK * 8])
    lengths = [len(b) for b in blocks(recv, 0, 0, piece)]
    assert lengths == [BLOCK] * 4 + [10]


def test_blocks_skip_what_a_holder_ignoring_range_resends():
    body = os.urandom(200_000)
    recv, state = scripted_recv(body, [7_000])
    got = b"".join(bytes(b) for b in blocks(recv, 150_000, 150_000, 65_536))
    assert got == body[150_000:]
    assert max(state["asked"]) <= BLOCK
