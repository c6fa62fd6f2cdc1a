"""Shared experiment defaults and config validation.

Every experiment file in `experiments/` starts from `base_config()` and overrides a few
fields, so all experiments share one set of field names. `validate()` checks a resolved
config before anything is written: a bad value fails with a `ConfigError` that names the
field and says what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_collections

from aevb import data as data_lib
from aevb import models, noise, objectives

MODEL_KINDS = ("vae", "autoencoder")
MIN_SPARSITY_BATCH = 32
OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd", "rmsprop")
DATA_SOURCES = ("auto", "idx", "tfds")


class ConfigError(ValueError):
    """A config field has a value the code cannot run with."""


def base_config() -> ml_collections.ConfigDict:
    """The defaults every experiment shares; experiment files override a few of them."""
    c = ml_collections.ConfigDict()
    c.experiment = "vae"

    c.data = ml_collections.ConfigDict()
    c.data.name = "fashion_mnist"       # any MNIST-layout IDX dataset or TFDS image dataset
    c.data.source = "auto"              # auto | idx | tfds (see aevb/data.py: load)
    c.data.dir = ""                     # directory with the four IDX files ('' = default)
    c.data.tfds_data_dir = ""           # TFDS data_dir ('' = TFDS default)
    c.data.binarize = "dynamic"         # dynamic | static | none
    c.data.num_validation = 0           # examples held out from train for validation
    c.data.seed = 0                     # validation split and the test set's binarization

    c.model = ml_collections.ConfigDict()
    c.model.kind = "vae"                # vae | autoencoder
    c.model.hidden_sizes = (500,)       # encoder widths; the decoder mirrors them
    c.model.latent_dim = 20             # the code size of an autoencoder
    c.model.activation = "tanh"
    c.model.decoder = "bernoulli"       # vae: bernoulli | gaussian
    # autoencoder only:
    c.model.code_activation = "linear"  # linear | sigmoid (sparse) | any model.activation
    c.model.output_activation = "sigmoid"   # sigmoid | linear
    c.model.reconstruction_loss = "mse"     # mse | cross_entropy (both per pixel)
    c.model.tied_weights = False        # decoder kernels = transposed encoder kernels

    c.noise = ml_collections.ConfigDict()   # denoising: corrupt the input, score the clean x
    c.noise.kind = "none"               # none | gaussian | masking | dropout | salt_and_pepper
    c.noise.std = 0.1                   # gaussian
    c.noise.rate = 0.5                  # masking, dropout, salt_and_pepper: fraction hit

    c.sparsity = ml_collections.ConfigDict()  # autoencoder codes
    c.sparsity.kind = "none"            # none | kl | l1
    c.sparsity.target = 0.1             # kl: target mean activation rho
    c.sparsity.weight = 5e-3            # multiplies the penalty

    c.train = ml_collections.ConfigDict()
    c.train.num_epochs = 30
    c.train.batch_size = 100
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.weight_decay = 0.0          # decoupled (adamw) or L2 added to gradients (others)
    c.train.seed = 0
    c.train.checkpoint_every_epochs = 1
    c.train.max_checkpoints = 2

    c.eval = ml_collections.ConfigDict()
    c.eval.every_epochs = 5
    c.eval.batch_size = 1000
    c.eval.iwae_k = 1000                # importance samples for the final log-likelihood
    c.eval.iwae_num_examples = 2000     # test examples it is estimated on (0 = none)
    c.eval.iwae_samples_per_chunk = 20000  # bounds memory: examples*k per compiled chunk
    c.eval.num_images = 64              # reconstructions and samples in the PNG grids
    return c


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config field {field}={value!r} is not allowed: {allowed}")


def _check_choice(config: ml_collections.ConfigDict, field: str, choices: tuple) -> None:
    value = _get(config, field)
    if value not in choices:
        _fail(field, value, f"must be one of {list(choices)}")


def _check_int(config: ml_collections.ConfigDict, field: str, minimum: int) -> None:
    value = _get(config, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(field, value, f"must be an integer >= {minimum}")


def _check_positive_float(config: ml_collections.ConfigDict, field: str,
                          allow_zero: bool = False) -> None:
    value = _get(config, field)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        _fail(field, value, "must be a number >= 0" if allow_zero else "must be a number > 0")


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"config field {field} is missing")
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field that does not depend on the data; raises ConfigError."""
    _check_choice(config, "data.source", DATA_SOURCES)
    _check_choice(config, "data.binarize", data_lib.BINARIZATIONS)
    if not isinstance(config.data.name, str) or not config.data.name:
        _fail("data.name", config.data.name,
              "must be a dataset name such as 'fashion_mnist', 'mnist' or 'kmnist'")
    _check_int(config, "data.num_validation", 0)

    _check_choice(config, "model.kind", MODEL_KINDS)
    _check_choice(config, "model.activation", tuple(models.ACTIVATIONS))
    _check_choice(config, "model.decoder", models.DECODERS)
    _check_choice(config, "model.code_activation", models.CODE_ACTIVATIONS)
    _check_choice(config, "model.output_activation", models.OUTPUT_ACTIVATIONS)
    _check_choice(config, "model.reconstruction_loss", objectives.RECONSTRUCTION_LOSSES)
    if (config.model.reconstruction_loss == "cross_entropy"
            and config.model.output_activation != "sigmoid"):
        _fail("model.output_activation", config.model.output_activation,
              "must be 'sigmoid' with model.reconstruction_loss='cross_entropy'")
    _check_int(config, "model.latent_dim", 1)
    sizes = config.model.hidden_sizes
    if (not isinstance(sizes, (tuple, list))
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        _fail("model.hidden_sizes", sizes,
              "must be a tuple of positive integers, e.g. --config.model.hidden_sizes='(500,)'")

    _check_int(config, "train.num_epochs", 1)
    _check_int(config, "train.batch_size", 1)
    _check_choice(config, "train.optimizer", OPTIMIZERS)
    _check_positive_float(config, "train.learning_rate")
    _check_positive_float(config, "train.weight_decay", allow_zero=True)
    _check_int(config, "train.checkpoint_every_epochs", 1)
    _check_int(config, "train.max_checkpoints", 1)

    _check_choice(config, "noise.kind", noise.NOISE_KINDS)
    _check_positive_float(config, "noise.std", allow_zero=True)
    rate = config.noise.rate
    if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        _fail("noise.rate", rate, "must be a number in [0, 1)")

    _check_choice(config, "sparsity.kind", objectives.SPARSITY_KINDS)
    _check_positive_float(config, "sparsity.weight", allow_zero=True)
    target = config.sparsity.target
    if not isinstance(target, (int, float)) or not 0 < target < 1:
        _fail("sparsity.target", target, "must be a number in (0, 1)")
    if config.sparsity.kind != "none" and config.model.kind != "autoencoder":
        _fail("sparsity.kind", config.sparsity.kind,
              "sparsity penalties act on autoencoder codes: use 'none' with "
              f"model.kind={config.model.kind!r}")
    if config.sparsity.kind == "kl":
        if config.model.code_activation != "sigmoid":
            _fail("model.code_activation", config.model.code_activation,
                  "must be 'sigmoid' with sparsity.kind='kl' (mean activations in (0, 1))")
        if config.train.batch_size < MIN_SPARSITY_BATCH:
            _fail("train.batch_size", config.train.batch_size,
                  f"must be >= {MIN_SPARSITY_BATCH} with sparsity.kind='kl': a unit's mean "
                  "activation over a smaller batch is too noisy to estimate")

    _check_int(config, "eval.every_epochs", 1)
    _check_int(config, "eval.batch_size", 1)
    _check_int(config, "eval.iwae_k", 1)
    _check_int(config, "eval.iwae_num_examples", 0)
    _check_int(config, "eval.iwae_samples_per_chunk", 1)
    _check_int(config, "eval.num_images", 1)


def validate_against_data(config: ml_collections.ConfigDict, num_train: int) -> None:
    """Checks the fields that depend on the loaded data; raises ConfigError."""
    if config.train.batch_size > num_train:
        _fail("train.batch_size", config.train.batch_size,
              f"must be at most the number of training examples ({num_train})")


def apply_variants(config: ml_collections.ConfigDict, variants: str, file: str,
                   known: dict[str, Callable[[ml_collections.ConfigDict], None]]
                   ) -> ml_collections.ConfigDict:
    """Applies the named variants of `--config=file.py:a,b` in order; unknown names fail.

    `runlocal` is known to every experiment: two epochs and small evaluations, a quick check.
    """
    known = {"runlocal": _runlocal, **known}
    for name in filter(None, (v.strip() for v in variants.split(","))):
        if name not in known:
            raise ConfigError(f"unknown variant {name!r} of {file}; allowed: {sorted(known)}")
        known[name](config)
    return config


def _runlocal(config: ml_collections.ConfigDict) -> None:
    config.train.num_epochs = 2
    config.eval.every_epochs = 1
    config.eval.iwae_k = 100
    config.eval.iwae_num_examples = 500
