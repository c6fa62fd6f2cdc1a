"""Data: IDX files, your arrays and image folders, TensorFlow Datasets, splits, binarization
and the denoising noise.

Importing this package never loads TFDS or TensorFlow (`tfds.py` is imported only when that
source is chosen). Re-exports what regimes and tests use as `data.<name>`.
"""

from aevb.data.arrays import load_npz
from aevb.data.cache import cache_root
from aevb.data.datasets import FASHION_MNIST_DEBIAN_DIR, DataError, Datasets, Split, fingerprint
from aevb.data.folder import load_folder
from aevb.data.idx import load_idx_dir, read_idx
from aevb.data.pixels import BINARIZATIONS, binarize, bits_per_dim, preprocess, to_unit_interval
from aevb.data.sources import SOURCES, hold_out_test, load, split_validation

__all__ = ["BINARIZATIONS", "FASHION_MNIST_DEBIAN_DIR", "SOURCES", "DataError", "Datasets",
           "Split", "binarize", "bits_per_dim", "cache_root", "fingerprint", "hold_out_test",
           "load", "load_folder", "load_idx_dir", "load_npz", "preprocess", "read_idx",
           "split_validation", "to_unit_interval"]
