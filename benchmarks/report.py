"""What the label-count benchmarks share in their reports: quiet runs and mean ± std."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silences the progress lines of the runs a benchmark makes (stdout only)."""
    with open(os.devnull, "w") as devnull:
        stdout, sys.stdout = sys.stdout, devnull
        try:
            yield
        finally:
            sys.stdout = stdout


def mean_std(values: np.ndarray) -> str:
    """Fractions [S] as 'mean ± sample std' in percent ('value (1 seed)' for one)."""
    values = np.asarray(values) * 100
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"
