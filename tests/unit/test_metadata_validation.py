"""Metadata from Consul KV is untrusted: every field is checked, bad entries are named and skipped."""

import hashlib
import json

import pytest

from tuggle_agent.objects.metadata import (
    MAX_META_BYTES,
    MAX_PIECE,
    MIN_PIECE,
    BadMetadata,
    ObjectMeta,
    PieceList,
    SyncSpec,
    parse_entries,
    piece_size_for,
)
from tuggle_agent.objects.names import object_id

SHA = hashlib.sha256(b"hello").hexdigest()
KEY = "tuggle/a.txt"


def good(**changes) -> dict:
    d = ObjectMeta(
        name="a.txt",
        size=5,
        sha256=SHA,
        content_type="text/plain",
        created_at="2026-11-27T05:05:57.977770Z",
        version="66edb7ad313f4d838306966279062b28",
    ).to_dict()
    if "name" in changes:
        del d["id"]  # the id follows the name (md5); tests of a planted id set it explicitly
    d.update(changes)
    return d


def entry(d, key=KEY) -> dict:
    value = d if isinstance(d, (bytes, str)) or d is None else json.dumps(d).encode()
    return {"Key": key, "Value": value, "ModifyIndex": 7}


def refused(d, field, key=KEY):
    with pytest.raises(BadMetadata) as info:
        ObjectMeta.from_entry(entry(d, key))
    assert key in str(info.value) and field in str(info.value), str(info.value)
    return info.value


def test_round_trip_keeps_go_field_names_and_order():
    meta = ObjectMeta.from_entry(entry(good()))
    assert list(json.loads(meta.to_json())) == [
        "id",
        "name",
        "content_type",
        "size",
        "created_at",
        "sha256",
        "version",
        "piece_size",
        "sync",
    ]
    assert ObjectMeta.from_json(meta.to_json(), KEY) == meta
    assert meta.last_modified == "Fri, 27 Nov 2026 05:05:57 GMT"


# -- name and key -------------------------------------------------------------
@pytest.mark.parametrize("name", ["", ".hidden", "../etc", "a/b", "a" * 256, 5, None])
def test_bad_names_refused(name):
    refused(good(name=name), "name")


def test_name_key_mismatch_refused():
    # Planted: KV key tuggle/a holding b's metadata would let DELETE /a delete b.
    refused(good(name="b.txt"), "name", key="tuggle/a.txt")


def test_nested_key_under_prefix_refused():
    with pytest.raises(BadMetadata, match="not an object key"):
        ObjectMeta.from_entry(entry(good(), "tuggle/x/a.txt"), "tuggle/")
    assert ObjectMeta.from_entry(entry(good()), "tuggle/").name == "a.txt"


def test_planted_id_refused_missing_id_recomputed():
    refused(good(id="0" * 32), "id")
    d = good()
    del d["id"]
    assert ObjectMeta.from_entry(entry(d)).id == object_id("a.txt")


# -- size, digests, version ---------------------------------------------------
@pytest.mark.parametrize("size", [-1, 2**53 + 1, True, 1.5, "5", None])
def test_bad_sizes_refused(size):
    refused(good(size=size), "size")


@pytest.mark.parametrize("size", [0, 1, 2**53])
def test_sizes_accepted(size):
    assert ObjectMeta.from_entry(entry(good(size=size))).size == size


@pytest.mark.parametrize("sha", ["", SHA.upper(), SHA[:-1], SHA + "0", "g" * 64, None])
def test_bad_sha256_refused(sha):
    refused(good(sha256=sha), "sha256")


@pytest.mark.parametrize("version", ["", "a" * 65, "a b", "a/b", "é", 7])
def test_bad_versions_refused(version):
    refused(good(version=version), "version")


@pytest.mark.parametrize("version", ["a", "A-b_9", "a" * 64])
def test_versions_accepted(version):
    assert ObjectMeta.from_entry(entry(good(version=version))).version == version


# -- piece size ---------------------------------------------------------------
@pytest.mark.parametrize(
    "piece", [-1, 0, 1, MIN_PIECE // 2, MIN_PIECE + 1, 3 * MIN_PIECE, MAX_PIECE * 2, float(MIN_PIECE), True, "65536"]
)
def test_bad_piece_sizes_refused(piece):
    # piece_size -1 made a fetch thread grow to 1.9 GiB.
    refused(good(piece_size=piece), "piece_size")


@pytest.mark.parametrize("piece", [MIN_PIECE, 2 * MIN_PIECE, MAX_PIECE])
def test_piece_sizes_accepted(piece):
    assert ObjectMeta.from_entry(entry(good(piece_size=piece))).piece_size == piece


def test_piece_size_for_stays_in_the_valid_range():
    assert piece_size_for(0) == MIN_PIECE
    assert piece_size_for(64 * 2**40) == MAX_PIECE
    for size in (0, 10**6, 10**9, 10**12, 64 * 2**40):
        ObjectMeta(name="x", size=size, sha256=SHA, piece_size=piece_size_for(size)).validate()


# -- content type and timestamps -----------------------------------------------
@pytest.mark.parametrize("ct", ["text/plain\r\nX-Evil: 1", "a\nb", "t" * 256, "tëxt/plain", 5])
def test_bad_content_types_refused(ct):
    refused(good(content_type=ct), "content_type")


def test_missing_content_type_defaults():
    assert ObjectMeta.from_entry(entry(good(content_type=None))).content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "ts",
    [
        "yesterday",
        "2026-02-30T00:00:00Z",
        "2026-11-27 05:05:57Z",
        "20261127T050557Z",
        "2026-11-27T05:05:57",
        1764220000,
        None,
    ],
)
def test_bad_timestamps_refused(ts):
    refused(good(created_at=ts), "created_at")


@pytest.mark.parametrize("ts", ["2017-02-27T05:05:57.977770467+09:00", "2026-11-27t05:05:57z", "2026-11-27T05:05:57Z"])
def test_rfc3339_timestamps_accepted_go_nanoseconds_included(ts):
    meta = ObjectMeta.from_entry(entry(good(created_at=ts)))
    assert meta.last_modified.endswith("GMT")


# -- sync ---------------------------------------------------------------------
def test_sync_accepted():
    sync = {"node": "^web", "service": "tuggle", "tag": "gpu", "requested_at": "2026-11-27T05:05:57Z"}
    assert ObjectMeta.from_entry(entry(good(sync=sync))).sync == SyncSpec(**sync)
    assert ObjectMeta.from_entry(entry(good(sync=None))).sync is None


@pytest.mark.parametrize(
    "sync,field",
    [
        ({"node": "("}, "sync"),  # the reported attack: every reconcile failed
        ({"node": r"(a)\1"}, "sync"),  # Perl-only syntax
        ({"tag": "gpu"}, "sync"),  # tag without service
        ({"node": 5}, "sync.node"),
        ({"node": "x", "shell": "rm"}, "sync"),
        ({"requested_at": "x" * 65}, "sync.requested_at"),
        ("node1", "sync"),
        ([], "sync"),
    ],
)
def test_bad_sync_refused(sync, field):
    refused(good(sync=sync), field)


# -- the value as a whole -------------------------------------------------------
@pytest.mark.parametrize("raw", [b"not json", b"", b"\xff\xfe", b"[]", b"null", b'"a.txt"', None])
def test_non_json_or_non_object_refused(raw):
    with pytest.raises(BadMetadata, match=KEY):
        ObjectMeta.from_entry(entry(raw))


def test_one_megabyte_value_refused_before_parsing():
    raw = json.dumps(good(padding="x" * 2**20)).encode()
    with pytest.raises(BadMetadata, match="exceeds the 65536-byte limit"):
        ObjectMeta.from_entry(entry(raw))
    small = json.dumps(good(padding="x" * (MAX_META_BYTES - 1000))).encode()
    assert ObjectMeta.from_entry(entry(small)).name == "a.txt"  # unknown fields are ignored


def test_absurd_nesting_and_nan_refused():
    with pytest.raises(BadMetadata, match="nested"):
        ObjectMeta.from_entry(entry(b'{"x":' + b"[" * 30000 + b"]" * 30000 + b"}"))
    with pytest.raises(BadMetadata, match="nested"):
        ObjectMeta.from_entry(entry(json.dumps(good(x=[[[[[[[[[1]]]]]]]]])).encode()))
    with pytest.raises(BadMetadata, match="NaN is not a JSON number"):
        ObjectMeta.from_entry(entry(json.dumps(good()).replace('"size": 5', '"size": NaN').encode()))


@pytest.mark.parametrize("missing", ["name", "size", "sha256", "version", "piece_size", "created_at"])
def test_required_fields(missing):
    d = good()
    del d[missing]
    refused(d, missing)


# -- listings -----------------------------------------------------------------
def test_parse_entries_keeps_good_reports_bad_skips_folders():
    entries = [
        entry(good()),
        entry(good(name="b.txt"), "tuggle/b.txt"),
        {"Key": "tuggle/", "Value": None},
        entry(good(name="c.txt", piece_size=-1), "tuggle/c.txt"),
        entry(b"garbage", "tuggle/d.txt"),
        entry(good(name="b.txt"), "tuggle/e.txt"),
        entry(good(), "tuggle/other-tool/a.txt"),  # a sub-prefix: not ours, neither object nor bad
    ]
    metas, bad = parse_entries(entries, "tuggle/")
    assert [m.name for m in metas] == ["a.txt", "b.txt"]
    assert [k for k, _ in bad] == ["tuggle/c.txt", "tuggle/d.txt", "tuggle/e.txt"]
    assert "piece_size" in bad[0][1] and "JSON" in bad[1][1] and "name" in bad[2][1]
    assert parse_entries(None) == ([], [])


# -- piece lists --------------------------------------------------------------
def pieces_json(piece_size=MIN_PIECE, digests=None) -> bytes:
    return json.dumps({"piece_size": piece_size, "sha256": [SHA] if digests is None else digests}).encode()


def test_piece_list_counts_must_match_the_size():
    meta = ObjectMeta.from_entry(entry(good()))
    assert PieceList.from_json(pieces_json(), meta).count() == 1
    with pytest.raises(BadMetadata, match="needs 1"):
        PieceList.from_json(pieces_json(digests=[SHA, SHA]), meta)
    empty = ObjectMeta.from_entry(entry(good(size=0)))
    assert PieceList.from_json(pieces_json(), empty).count() == 1  # an empty object has one empty piece
    big = ObjectMeta.from_entry(entry(good(size=3 * MIN_PIECE + 1)))
    assert PieceList.from_json(pieces_json(digests=[SHA] * 4), big).count() == 4
    with pytest.raises(BadMetadata, match="needs 4"):
        PieceList.from_json(pieces_json(digests=[SHA] * 3), big)
    with pytest.raises(BadMetadata, match="piece_size"):
        PieceList.from_json(pieces_json(piece_size=2 * MIN_PIECE), meta)


@pytest.mark.parametrize(
    "raw,field",
    [
        (pieces_json(piece_size=-1), "piece_size"),
        (pieces_json(digests=[]), "sha256"),
        (pieces_json(digests=["zz"]), "sha256[0]"),
        (pieces_json(digests=[SHA, 5]), "sha256[1]"),
        (b'{"piece_size": 65536, "sha256": "' + SHA.encode() + b'"}', "sha256"),
        (b"nope", "JSON"),
        (json.dumps({"piece_size": MIN_PIECE, "sha256": [SHA] * 8000}).encode(), "limit"),
    ],
)
def test_bad_piece_lists_refused(raw, field):
    with pytest.raises(BadMetadata, match=field.replace("[", r"\[").replace("]", r"\]")):
        PieceList.from_json(raw, key="tuggle.pieces/a.txt/v")


# -- piece digest algorithms ---------------------------------------------------
def test_piece_lists_without_an_algorithm_are_sha256_and_round_trip():
    """Lists written before BLAKE3 (no "algorithm") still verify as SHA-256, and a SHA-256
    list is still written in that format, so older agents read it."""
    old = PieceList.from_json(pieces_json())
    assert old.algorithm == "sha256" and old.digests == [SHA]
    assert json.loads(old.to_json()) == {"piece_size": MIN_PIECE, "sha256": [SHA]}
    new = PieceList(MIN_PIECE, [SHA], "blake3")
    assert json.loads(new.to_json()) == {"piece_size": MIN_PIECE, "algorithm": "blake3", "digests": [SHA]}
    assert PieceList.from_json(new.to_json()) == new


@pytest.mark.parametrize(
    "doc,field",
    [
        ({"algorithm": "md5", "digests": [SHA]}, "algorithm"),
        ({"algorithm": ["blake3"], "digests": [SHA]}, "algorithm"),
        ({"algorithm": None, "sha256": [SHA]}, "algorithm"),
        ({"algorithm": "blake3", "sha256": [SHA]}, "digests"),  # a named list keeps them under "digests"
        ({"algorithm": "blake3", "digests": ["ab"]}, r"digests\[0\]"),
    ],
)
def test_piece_lists_naming_an_unknown_algorithm_or_misplacing_digests_are_refused(doc, field):
    raw = json.dumps({"piece_size": MIN_PIECE, **doc}).encode()
    with pytest.raises(BadMetadata, match=field) as exc:
        PieceList.from_json(raw, key="tuggle.pieces/a.txt/v")
    assert "tuggle.pieces/a.txt/v" in str(exc.value)
