"""The cache.* settings (disk lifecycle): sizes or percentages, watermarks in order."""

import pytest

from tuggle_agent.config import ConfigError, DiskLimit, load_config


def load(tmp_path, text):
    p = tmp_path / "tuggle.yaml"
    p.write_text(f"data_dir: {tmp_path / 'data'}\n{text}")
    return load_config(p, env={})


def test_defaults():
    cfg = load_config(None, env={})
    assert cfg.cache_max_disk == DiskLimit(fraction=0.9)
    assert (cfg.cache_high_watermark, cfg.cache_low_watermark) == (0.9, 0.8)
    assert (cfg.cache_max_age, cfg.cache_min_copies) == (0.0, 2)


def test_sizes_percentages_and_durations(tmp_path):
    cfg = load(
        tmp_path, "cache: {max_disk: 3MiB, high_watermark: 75%, low_watermark: 50, max_age: 1h, min_copies: 1}\n"
    )
    assert cfg.cache_max_disk == DiskLimit(bytes=3 * 2**20)
    assert cfg.cache_max_disk.resolve(10**12) == 3 * 2**20
    assert (cfg.cache_high_watermark, cfg.cache_low_watermark, cfg.cache_max_age) == (0.75, 0.5, 3600.0)
    share = load(tmp_path, "cache: {max_disk: 80%}\n").cache_max_disk
    assert share.resolve(1000) == 800 and share.resolve(1000, others=300) == 500 and share.resolve(1000, 900) == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("cache: {max_disk: 120%}", "cache.max_disk"),
        ("cache: {max_disk: lots}", "cache.max_disk"),
        ("cache: {max_disk: 0}", "cache.max_disk"),
        ("cache: {high_watermark: 0%}", "cache.high_watermark"),
        ("cache: {low_watermark: yes}", "cache.low_watermark"),
        ("cache: {min_copies: 0}", "cache.min_copies"),
        ("cache: {max_age: -1s}", "cache.max_age"),
        ("cache: {high_watermark: 70%, low_watermark: 80%}", "cache.low_watermark"),
        ("cache: {max_size: 1GiB}", "cache.max_size"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(tmp_path, text + "\n")
