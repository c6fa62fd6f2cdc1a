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
    c.model.kl_weight = 1.0             # vae: loss = recon + kl_weight * KL (1: the -ELBO)
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

    # --- greedy layer-wise training and unsupervised pretraining (aevb/layerwise.py,
    # aevb/pretrain.py) ---
    c.task = "reconstruct"              # reconstruct | pretrain (autoencoder, then classifier)
    c.train.schedule = "joint"          # joint | layerwise (autoencoders: one layer at a time,
    #                                     train.num_epochs epochs per layer)
    c.train.finetune_epochs = 0         # layerwise: end-to-end epochs after assembling the stack

    c.labels = ml_collections.ConfigDict()   # pretrain: the labeled subset of the train split
    c.labels.num = 1000                 # labeled examples, class-balanced (0 = all)
    c.labels.seed = 0                   # which ones

    c.classifier = ml_collections.ConfigDict()  # pretrain: encoder layers + softmax head
    c.classifier.encoder = "trainable"  # frozen (only the head learns) | trainable
    c.classifier.encoder_layers = 0     # pretrained encoder layers under the head (0 = all)
    c.classifier.num_steps = 2000       # the budget, the same for pretrained and scratch
    c.classifier.batch_size = 100
    c.classifier.optimizer = "adam"
    c.classifier.learning_rate = 1e-3
    c.classifier.weight_decay = 0.0
    c.classifier.eval_every_steps = 500  # test accuracy, metrics line and checkpoint
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
    _check_positive_float(config, "model.kl_weight", allow_zero=True)
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
    _validate_layerwise_and_pretrain(config)


def validate_against_data(config: ml_collections.ConfigDict, num_train: int) -> None:
    """Checks the fields that depend on the loaded data; raises ConfigError."""
    if config.train.batch_size > num_train:
        _fail("train.batch_size", config.train.batch_size,
              f"must be at most the number of training examples ({num_train})")
    if config.task == "pretrain":
        if config.labels.num > num_train:
            _fail("labels.num", config.labels.num,
                  f"must be at most the number of training examples ({num_train}), or 0 = all")
        num_labeled = config.labels.num or num_train
        if config.classifier.batch_size > num_labeled:
            _fail("classifier.batch_size", config.classifier.batch_size,
                  f"must be at most the number of labeled examples ({num_labeled})")


# --- greedy layer-wise training and unsupervised pretraining ---

SCHEDULES = ("joint", "layerwise")
TASKS = ("reconstruct", "pretrain")
CLASSIFIER_ENCODERS = ("frozen", "trainable")


def _validate_layerwise_and_pretrain(config: ml_collections.ConfigDict) -> None:
    """The fields of `train.schedule`, `task`, `labels` and `classifier`; raises ConfigError."""
    _check_choice(config, "task", TASKS)
    _check_choice(config, "train.schedule", SCHEDULES)
    _check_int(config, "train.finetune_epochs", 0)
    if config.train.schedule == "layerwise":
        if config.model.kind != "autoencoder":
            _fail("train.schedule", "layerwise",
                  "layer-wise training builds stacked autoencoders: use 'joint' with "
                  f"model.kind={config.model.kind!r}")
        if (config.sparsity.kind == "kl" and config.model.hidden_sizes
                and config.model.activation != "sigmoid"):
            _fail("model.activation", config.model.activation,
                  "must be 'sigmoid' with train.schedule='layerwise' and sparsity.kind='kl': "
                  "every layer's code is made sparse, so every code needs activations in (0, 1)")
    elif config.train.finetune_epochs:
        _fail("train.finetune_epochs", config.train.finetune_epochs,
              "must be 0 unless train.schedule='layerwise' (it fine-tunes an assembled stack)")

    _check_int(config, "labels.num", 0)
    _check_int(config, "labels.seed", 0)
    _check_choice(config, "classifier.encoder", CLASSIFIER_ENCODERS)
    num_layers = len(config.model.hidden_sizes) + 1
    _check_int(config, "classifier.encoder_layers", 0)
    if config.classifier.encoder_layers > num_layers:
        _fail("classifier.encoder_layers", config.classifier.encoder_layers,
              f"the encoder has {num_layers} layers (model.hidden_sizes and the code): "
              f"must be 0 (all) to {num_layers}")
    _check_int(config, "classifier.num_steps", 1)
    _check_int(config, "classifier.batch_size", 1)
    _check_choice(config, "classifier.optimizer", OPTIMIZERS)
    _check_positive_float(config, "classifier.learning_rate")
    _check_positive_float(config, "classifier.weight_decay", allow_zero=True)
    _check_int(config, "classifier.eval_every_steps", 1)


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
    config.train.finetune_epochs = min(config.train.finetune_epochs, 1)
    config.classifier.num_steps = min(config.classifier.num_steps, 100)
    config.classifier.eval_every_steps = min(config.classifier.eval_every_steps, 50)
    config.labels.num = min(config.labels.num or 100, 100)
