"""core.host: what benchmark records say about the machine, checked against independent sources."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ideogram_trt.core.host import cpu_model, memory_gib, package_version


def test_package_version_takes_the_first_installed_name() -> None:
    assert package_version("numpy") == np.__version__
    assert package_version("no-such-distribution-xyz", "numpy") == np.__version__
    assert package_version("no-such-distribution-xyz") is None


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux /proc only")
def test_memory_matches_sysconf() -> None:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    gib = memory_gib()
    assert gib is not None and abs(gib - total) < 0.1


def test_cpu_model_is_a_name() -> None:
    name = cpu_model()
    assert name and "\n" not in name and not name.startswith(":")
