"""What a dataset is, for every source: `Split`, `Datasets`, and the `DataError` a source
raises when the data cannot be had. `aevb/data/sources.py` (IDX files, splits, binarization) and
the optional `aevb/data/tfds.py` both build these, so neither imports the other's code.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from aevb.config.checks import UserError

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


class DataError(UserError):
    """Data cannot be loaded; message says what to do."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a labelled image dataset, kept as compact host arrays.

    Attributes:
      images: uint8 [N, H, W, C], raw pixel values 0..255.
      labels: int32 [N], class indices.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                "Split.images must be uint8 [N, H, W, C], got "
                f"{self.images.dtype} {list(self.images.shape)}"
            )
        if self.labels.dtype != np.int32 or self.labels.ndim != 1:
            raise ValueError(
                f"Split.labels must be int32 [N], got {self.labels.dtype} {list(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"Split has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Everything an experiment trains and evaluates on.

    Attributes:
      name: dataset name as configured (e.g. 'fashion_mnist').
      train: examples to fit on.
      validation: held-out part of the original train split for model selection,
        or None when `data.num_validation` is 0.
      test: the dataset's official test split.
    """

    name: str
    train: Split
    validation: Split | None
    test: Split

    def __post_init__(self) -> None:
        for split_name in ("test", "validation"):
            split = getattr(self, split_name)
            if split is not None and split.images.shape[1:] != self.image_shape:
                raise ValueError(
                    f"Datasets.{split_name} images are {list(split.images.shape[1:])} "
                    f"but train images are {list(self.image_shape)}"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        height, width, channels = self.train.images.shape[1:]
        return int(height), int(width), int(channels)

    @property
    def num_pixels(self) -> int:
        """H * W * C: the length of a flattened image, i.e. the data dimension D."""
        return math.prod(self.image_shape)
