"""Resolution buckets: the default table, how users name them, validation, and the nearest-bucket hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from ideogram_trt.core.buckets import Bucket, nearest
from ideogram_trt.core.errors import InputError
from ideogram_trt.engines.buckets import DEFAULT_BUCKETS, parse_buckets


def test_default_table_has_the_1024_family_and_the_documented_sizes() -> None:
    names = list(DEFAULT_BUCKETS)
    assert names[:9] == ["1024x1024", "1152x896", "896x1152", "1216x832", "832x1216", "1344x768", "768x1344",
                         "1536x640", "640x1536"]  # fmt: skip
    for size in ("1536x1024", "1024x1536", "1920x1088", "2048x768", "1024x1792", "2048x2048", "512x512"):
        assert size in DEFAULT_BUCKETS
    assert DEFAULT_BUCKETS["1024x1024"].tokens == 4096 and DEFAULT_BUCKETS["2048x2048"].tokens == 16384


def test_names_sizes_and_files(tmp_path: Path) -> None:
    assert parse_buckets("1024x1024,768x1344") == [Bucket(1024, 1024), Bucket(768, 1344)]
    assert parse_buckets("square, 336x2016") == [Bucket(1024, 1024), Bucket(336, 2016)]
    assert len(parse_buckets("all")) == len(DEFAULT_BUCKETS)
    listing = tmp_path / "buckets.txt"
    listing.write_text("# our sizes\n1024x1024\n1600x400  # a banner\n")
    assert parse_buckets(f"@{listing}") == [Bucket(1024, 1024), Bucket(1600, 400)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1000x1024", r"1000x1024: height 1000 is not a multiple of 16"),
        ("128x256", r"128x256: height 128 is outside 256..2048"),
        ("256x2048", r"256x2048: aspect ratio above 6:1"),
        ("big", r"bucket 'big': write it as HEIGHTxWIDTH"),
        ("512x512,512x512", r"bucket 512x512 is listed twice"),
        ("", r"no buckets given"),
    ],
)
def test_bad_buckets_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_buckets(spec)


def test_nearest_prefers_the_same_aspect_ratio() -> None:
    table = list(DEFAULT_BUCKETS.values())
    assert nearest(table, 1000, 1000, 2) == [Bucket(1024, 1024), Bucket(512, 512)]
    assert nearest(table, 760, 1350, 1) == [Bucket(768, 1344)]
