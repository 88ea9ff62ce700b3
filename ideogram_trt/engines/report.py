"""The engine set as a table: engines, buckets, profiles, sizes, build times, versions."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ideogram_trt.core.manifest import Manifest


def print_report(manifest: Manifest, console: Console | None = None) -> None:
    console = console or Console()
    targets = ", ".join(manifest.compute_capabilities) or "-"
    title = (
        f"{manifest.flavor.value} {manifest.runtime_version} | sm {targets}"
        + (f" | {manifest.gpu}" if manifest.gpu else "")
        + f" | {manifest.recipe}/{manifest.dtype} | buckets {', '.join(manifest.buckets)}"
    )
    table = Table(title=title)
    for column in ("engine", "buckets", "profiles", "MB", "weights MB", "build s", "peak GiB"):
        table.add_column(column, overflow="fold")
    for entry in manifest.engines.values():
        build = entry.build
        table.add_row(
            entry.name,
            " ".join(entry.buckets) or "all",
            str(len(entry.profiles)),
            f"{entry.bytes / 1e6:.1f}",
            f"{build.weights_bytes / 1e6:.1f}" if build else "-",
            f"{build.seconds:.1f}" if build else "-",
            f"{build.peak_host_memory_bytes / 2**30:.2f}" if build else "-",
        )
    console.print(table)
