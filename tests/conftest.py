"""Shared fixtures: a small IDX dataset cut from the real Fashion-MNIST, and a fast config."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from aevb import data as data_lib

FASHION_DIR = data_lib.FASHION_MNIST_DEBIAN_DIR


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (gzip when the name ends in .gz)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                   *array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture(scope="session")
def tiny_idx_dir(tmp_path_factory) -> str:
    """1,000 training and 200 test images of real Fashion-MNIST, in the standard IDX layout."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
    train, test = data_lib.load_idx_dir(FASHION_DIR)
    out = tmp_path_factory.mktemp("tiny_fashion_mnist")
    for prefix, split, n in (("train", train, 1000), ("t10k", test, 200)):
        write_idx(str(out / f"{prefix}-images-idx3-ubyte.gz"), split.images[:n, :, :, 0])
        write_idx(str(out / f"{prefix}-labels-idx1-ubyte.gz"), split.labels[:n].astype(np.uint8))
    return str(out)


@pytest.fixture
def tiny_config(tiny_idx_dir):
    """The default VAE config shrunk to seconds: tiny data, small model, small IWAE."""
    from experiments import vae

    config = vae.get_config()
    config.data.dir = tiny_idx_dir
    config.model.hidden_sizes = (64,)
    config.model.latent_dim = 4
    config.train.num_epochs = 2
    config.train.batch_size = 50
    config.eval.every_epochs = 1
    config.eval.batch_size = 100
    config.eval.iwae_k = 20
    config.eval.iwae_num_examples = 50
    config.eval.num_images = 16
    return config
