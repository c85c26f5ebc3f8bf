"""Shared by the fetch and relay tests: kill the source of a running fetch and check the
fetch still ends with the whole, verified object (resumed with Range from another holder)."""


def assert_survives_source_kill(got, source, fetcher, name: str, body: bytes, timeout: float) -> None:
    """`got`: the future of `fetcher`'s GET of `name`; `source`: the agent it pulls from now."""
    source.kill()
    try:
        r = got.result(timeout)
        assert r.status_code == 200 and r.content == body
        assert fetcher.local_file(name).read_bytes() == body
        assert "resuming from byte" in fetcher.log()
    finally:
        source.start()
