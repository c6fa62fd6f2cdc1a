"""What every regime does before its first step: validate the config, load and check the
data, then (only now) claim the workdir (`claim`), and prepare the evaluation inputs.

The order is the guarantee: a config or data error stops the run before anything is
written, not even the lock file. `claim` then takes the workdir lock (`aevb/run/lock.py`) and
writes `config.json` (on resume: refuses a change that would alter the run's history, and
sets the summary of an earlier ending aside when the config changes, e.g. more epochs).
`finished` is the one test of "this run is done", for sweeps and for pretraining's phase 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from aevb import data as data_lib
from aevb.data.pixels import preprocess
from aevb.evaluation.measures import EvalData
from aevb.regimes import labels
from aevb.regimes.validation import validate, validate_against_data
from aevb.run import parallel, startup
from aevb.training import keys


def load_and_check(config: ml_collections.ConfigDict, share: bool = True
                   ) -> data_lib.Datasets:
    """Validates the config, loads the data, checks the config against it. Writes nothing.
    A run that trains on images alone (`task=reconstruct`: the pretraining run of pretrain,
    M1 of semisupervised) under `labels.hold_out` has the labeled validation examples in
    its validation split, not in its training split (`labels.hold_out`).

    In a multi-process run with `share`, each process keeps only the training rows its
    devices will hold (`parallel.row_block`); the regimes that pick labeled examples across
    the whole set on the host (pretrain, semisupervised) keep every row.
    """
    validate(config)
    datasets = data_lib.load(config.data)
    if config.task == "reconstruct":  # a pretraining run never sees the validation images
        datasets = labels.hold_out(config, datasets)
    validate_against_data(config, datasets.train.images.shape[0], datasets.image_shape,
                          datasets.has_labels)
    if share and jax.process_count() > 1:
        datasets = datasets.share(parallel.row_block(datasets.num_train, parallel.make_mesh()))
    startup.mark("data")
    return datasets


def flat_images(split: data_lib.Split) -> np.ndarray:
    """A split's images as uint8 rows [N, D]."""
    return split.images.reshape(split.images.shape[0], -1)


def train_rows(datasets: data_lib.Datasets, mesh: Mesh) -> jax.Array:
    """The training images as uint8 rows [N (padded), D] split over the devices by rows
    (`parallel.shard_rows`), from the rows this host holds."""
    return parallel.shard_rows(flat_images(datasets.train), datasets.first_train_row,
                               datasets.num_train, mesh)


def dataset_identity(config: ml_collections.ConfigDict, datasets: data_lib.Datasets) -> str:
    """The dataset (its content hash), binarization and training split, as one string (the
    cache key of measurements that depend only on the data, such as PCA's error)."""
    return (f"{datasets.name}/{datasets.fingerprint[:16]}/{config.data.binarize}/"
            f"train={datasets.num_train}/val_seed={config.data.seed}/"
            "fit=model_inputs")


# One compiled program per mode (persistently cached), not op by op; the same values.
_preprocess = jax.jit(preprocess, static_argnums=1)


def eval_data(config: ml_collections.ConfigDict, datasets: data_lib.Datasets,
              mesh: Mesh | None) -> EvalData:
    """The evaluation inputs: test (and validation) splits as model inputs float32 [N, D]
    on every device, binarized once with the fixed keys of `data.seed`, and the training
    set as the model sees it (one fixed draw under dynamic binarization), on demand."""
    data_key = keys.data_keys(config.data.seed)
    splits = {"test": (datasets.test, data_key.test),
              "validation": (datasets.validation, data_key.validation)}
    inputs = {}
    for name, (split, key) in splits.items():
        if split is not None:
            x = _preprocess(jnp.asarray(flat_images(split)), config.data.binarize, key)
            inputs[name] = parallel.replicate(x, mesh) if mesh is not None else x

    def train_inputs() -> np.ndarray:  # a process holding a share reads every row again
        train = data_lib.load(config.data).train if datasets.num_train_rows else datasets.train
        return np.asarray(_preprocess(jnp.asarray(flat_images(train)), config.data.binarize,
                                      data_key.train))

    return EvalData(splits=inputs, train_inputs=train_inputs,
                    identity=dataset_identity(config, datasets),
                    image_shape=datasets.image_shape)
