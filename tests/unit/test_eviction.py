"""The eviction policy (engine/eviction.py): which copies go, in which order, and when a
download is refused.  Pure: copies, usage and limits in, the plan out."""

from tuggle_agent.engine.eviction import MAX_AGE, WATERMARK, Copy, Limits, Usage, plan, quiet

MiB = 2**20
NOW = 1_000_000.0
LIMITS = Limits(max_bytes=10 * MiB, high=0.9, low=0.5, min_copies=2)
ROOMY = 10**12  # free bytes on the filesystem: plenty


def copy(name, size_mib=1, age=0.0, **kw):
    return Copy(name, size_mib * MiB, NOW - age, **kw)


def holders(counts=None, default=2):
    asked = []

    def count(name):
        asked.append(name)
        return (counts or {}).get(name, default)

    count.asked = asked  # type: ignore[attr-defined]
    return count


def evicted(p):
    return [c.name for c, _ in p.evict]


def used(copies):
    return sum(c.size for c in copies)


def test_below_the_high_watermark_nothing_is_evicted():
    copies = [copy("a", 3, age=100), copy("b", 3, age=50)]  # 6 of 10 MiB, high is 9
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, holders())
    assert evicted(p) == [] and p.refused is None


def test_least_recently_read_first_down_to_the_low_watermark():
    copies = [copy("new", 2, age=1), copy("old", 2, age=300), copy("mid", 2, age=100), copy("older", 4, age=200)]
    h = holders()
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, h)  # 10 MiB > 9: down to 5
    assert evicted(p) == ["old", "older"]  # 10 - 2 - 4 = 4 <= 5: stops there
    assert all(reason == WATERMARK for _, reason in p.evict)
    assert p.used_after == 4 * MiB <= LIMITS.low_bytes
    assert h.asked == ["old", "older"]  # Consul is asked only about the copies chosen


def test_pinned_in_use_and_orphan_copies_survive():
    copies = [
        copy("pinned", 3, age=900, pinned=True),
        copy("reading", 3, age=800, in_use=True),
        copy("orphan", 3, age=700, orphan=True),
        copy("free", 1, age=1),
    ]
    h = holders()
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, h)
    assert evicted(p) == ["free"]
    assert h.asked == ["free"]


def test_copies_with_fewer_than_min_copies_other_holders_survive():
    copies = [copy("last", 4, age=900), copy("one-other", 3, age=800), copy("well-held", 3, age=10)]
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, holders({"last": 0, "one-other": 1}))
    assert evicted(p) == ["well-held"]
    lenient = Limits(max_bytes=10 * MiB, high=0.9, low=0.5, min_copies=1)
    p = plan(copies, Usage(used(copies), ROOMY), lenient, NOW, holders({"last": 0, "one-other": 1}))
    assert evicted(p) == ["one-other", "well-held"]


def test_max_age_selects_old_unneeded_copies_only_whatever_the_usage():
    limits = Limits(max_bytes=100 * MiB, max_age=3600, min_copies=2)
    copies = [
        copy("stale", 1, age=7200),
        copy("fresh", 1, age=60),
        copy("stale-pinned", 1, age=7200, pinned=True),
        copy("stale-last", 1, age=9000),
    ]
    p = plan(copies, Usage(used(copies), ROOMY), limits, NOW, holders({"stale-last": 1}))
    assert [(c.name, r) for c, r in p.evict] == [("stale", MAX_AGE)]
    no_age = Limits(max_bytes=100 * MiB, min_copies=2)
    assert evicted(plan(copies, Usage(used(copies), ROOMY), no_age, NOW, holders())) == []


def test_a_download_makes_room_when_eviction_can_free_enough():
    copies = [copy("a", 3, age=30), copy("b", 3, age=20), copy("c", 1, age=10)]  # 7 of 10
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, holders(), need=3 * MiB)
    assert p.refused is None
    assert evicted(p) == ["a", "b"]  # 7 + 3 = 10 > 9: down to 5 including the new object
    assert p.used_after + 3 * MiB <= LIMITS.low_bytes


def test_a_download_that_cannot_fit_even_after_eviction_is_refused_and_evicts_nothing():
    copies = [copy("pinned", 6, pinned=True), copy("a", 2, age=30)]
    fits = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, holders(), need=3 * MiB)
    assert fits.refused is None and evicted(fits) == ["a"]  # 8 + 3 - 2 = 9 <= 10
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, holders(), need=5 * MiB)
    assert p.refused is not None
    assert "needs 5242880 bytes" in p.refused and "pinned by ?sync: pinned" in p.refused
    assert evicted(p) == []  # 8 MiB < 9 MiB: no watermark eviction either
    too_big = plan([], Usage(0, ROOMY), LIMITS, NOW, holders(), need=11 * MiB)
    assert too_big.refused is not None and "over max_disk" in too_big.refused


def test_refused_when_only_last_copies_could_make_room():
    copies = [copy("last", 8, age=30)]
    p = plan(copies, Usage(used(copies), ROOMY), LIMITS, NOW, holders({"last": 1}), need=3 * MiB)
    assert p.refused is not None and evicted(p) == []


def test_the_filesystem_free_space_counts_with_headroom():
    limits = Limits(max_bytes=100 * MiB, headroom=MiB, min_copies=2)
    copies = [copy("a", 2, age=30), copy("b", 2, age=20)]
    # 3 MiB free: a 3 MiB object needs 1 MiB of headroom more, so one copy goes.
    p = plan(copies, Usage(used(copies), 3 * MiB), limits, NOW, holders(), need=3 * MiB)
    assert p.refused is None and evicted(p) == ["a"]
    p = plan(copies, Usage(used(copies), 0), limits, NOW, holders(), need=5 * MiB)
    assert p.refused is not None and "more than the filesystem has free" in p.refused


def test_quiet_when_nothing_is_to_be_evicted_and_the_download_fits_as_is():
    limits = Limits(max_bytes=10 * MiB, high=0.9, low=0.5, headroom=MiB)
    assert quiet(Usage(5 * MiB, ROOMY), limits, need=4 * MiB)
    assert not quiet(Usage(5 * MiB, ROOMY), limits, need=5 * MiB)  # above the high watermark
    assert not quiet(Usage(0, 4 * MiB), limits, need=4 * MiB)  # no headroom left on the filesystem
    assert not quiet(Usage(0, ROOMY), Limits(max_bytes=10 * MiB, max_age=60), need=0)  # old copies to look for
