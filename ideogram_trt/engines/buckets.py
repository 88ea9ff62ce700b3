"""The default bucket table and how users name buckets (``--buckets``): table names or ``HEIGHTxWIDTH``,
comma-separated, or a file with one per line."""

from __future__ import annotations

from pathlib import Path

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.errors import InputError

# The 1024² family, then the sizes docs/MODEL.md §5.6 lists (named by their size).
DEFAULT_BUCKETS: dict[str, Bucket] = {
    b.name: b
    for b in (
        Bucket(1024, 1024),
        Bucket(1152, 896),
        Bucket(896, 1152),
        Bucket(1216, 832),
        Bucket(832, 1216),
        Bucket(1344, 768),
        Bucket(768, 1344),
        Bucket(1536, 640),
        Bucket(640, 1536),
        Bucket(1536, 1024),
        Bucket(1024, 1536),
        Bucket(1920, 1088),
        Bucket(2048, 768),
        Bucket(1024, 1792),
        Bucket(2048, 2048),
        Bucket(512, 512),
    )
}
ALIASES = {"square": "1024x1024", "default": "1024x1024"}


def parse_buckets(spec: str) -> list[Bucket]:
    """``spec``: comma-separated names/sizes, ``@FILE`` for a file, or ``all`` for the whole default table."""
    spec = spec.strip()
    if spec == "all":
        return list(DEFAULT_BUCKETS.values())
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise InputError(f"{path}: bucket file not found")
        items = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    else:
        items = spec.split(",")
    buckets: list[Bucket] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        bucket = DEFAULT_BUCKETS.get(ALIASES.get(item, item)) or Bucket.parse(item)
        if bucket in buckets:
            raise InputError(f"bucket {bucket.name} is listed twice")
        buckets.append(bucket)
    if not buckets:
        raise InputError("no buckets given: e.g. --buckets 1024x1024,768x1344 (or 'all' for the default table)")
    return buckets
