"""Small shared helpers for the tests."""

from __future__ import annotations

import numpy as np
import torch


def relative_error(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64."""
    a = torch.as_tensor(np.asarray(actual) if isinstance(actual, np.ndarray) else actual).double()
    e = torch.as_tensor(np.asarray(expected) if isinstance(expected, np.ndarray) else expected).double()
    return float((a - e).norm() / e.norm())
