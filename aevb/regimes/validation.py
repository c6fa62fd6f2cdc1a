"""Whole-config validation: every field, before any data (`validate`), then against the data
and the devices (`validate_against_data`). A user's mistake is a ConfigError naming the
field and what is allowed; each family and architecture checks its own fields.
"""

from __future__ import annotations

import math

import ml_collections

from aevb import architectures, families, models
from aevb import data as data_lib
from aevb.config.checks import (
    SEED_MAX,
    check_choice,
    check_int,
    check_int_tuple,
    check_number,
    fail,
    get,
)
from aevb.data import noise
from aevb.evaluation import graph_classifiers
from aevb.run import parallel
from aevb.training import keys, schedules
from aevb.training.train_state import OPTIMIZERS

SCHEDULES = ("joint", "layerwise")


TASKS = ("reconstruct", "pretrain", "semisupervised")


CLASSIFIER_ENCODERS = ("frozen", "trainable")


def _check_optimizer(config: ml_collections.ConfigDict, section: str) -> None:
    """The optimizer fields of `train` or `classifier`: one validation for both."""
    check_choice(config, f"{section}.optimizer", OPTIMIZERS)
    check_number(config, f"{section}.learning_rate", 0.0, low_open=True)
    check_choice(config, f"{section}.lr_schedule", schedules.LR_SCHEDULES)
    check_number(config, f"{section}.adam_eps", 0.0, low_open=True)
    check_number(config, f"{section}.weight_decay", 0.0)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field that does not depend on the data; raises ConfigError."""
    check_choice(config, "data.source", data_lib.SOURCES)
    check_choice(config, "data.binarize", data_lib.BINARIZATIONS)
    if not isinstance(config.data.name, str) or not config.data.name:
        fail("data.name", config.data.name,
             "must be a dataset name such as 'fashion_mnist', 'mnist' or 'kmnist'")
    check_int(config, "data.num_validation", 0)
    check_int(config, "data.seed", 0, SEED_MAX)
    if not isinstance(config.data.path, str):
        fail("data.path", config.data.path, "must be a path: an .npz file or an image folder")
    check_number(config, "data.test_fraction", 0.0, 1.0, low_open=True)

    check_choice(config, "model.kind", families.KINDS)
    check_choice(config, "model.architecture", architectures.NAMES)
    check_choice(config, "model.activation", (*models.ACTIVATIONS, models.GATED))
    check_int(config, "model.latent_dim", 1)
    check_int_tuple(config, "model.hidden_sizes")

    check_int(config, "train.num_epochs", 1)
    check_int(config, "train.batch_size", 1)
    _check_optimizer(config, "train")
    check_choice(config, "train.normalize_gradients", (False, True))
    check_int(config, "train.checkpoint_every_epochs", 0)
    check_number(config, "train.checkpoint_every_secs", 0.0)
    check_int(config, "train.max_checkpoints", 1)
    check_choice(config, "train.profile", (False, True))
    check_choice(config, "train.prng_impl", keys.PRNG_IMPLS)
    check_int(config, "train.seed", 0, SEED_MAX)

    check_choice(config, "noise.kind", noise.NOISE_KINDS)
    check_number(config, "noise.std", 0.0)
    check_number(config, "noise.rate", 0.0, 1.0)
    check_number(config, "sparsity.weight", 0.0)
    check_number(config, "sparsity.target", 0.0, 1.0, low_open=True)

    for field in ("every_epochs", "batch_size", "iwae_k", "iwae_samples_per_chunk",
                  "iwae_codes_per_block", "num_images"):
        check_int(config, f"eval.{field}", 1)
    check_int(config, "eval.iwae_num_examples", -1)
    check_choice(config, "eval.test_while_training", (False, True))
    _validate_regimes(config)
    family = families.get(config.model.kind)
    if config.sparsity.kind != "none" and not family.supports_sparsity:
        fail("sparsity.kind", config.sparsity.kind,
             f"sparsity penalties act on autoencoder codes: use 'none' with "
             f"model.kind={config.model.kind!r}")
    if config.train.schedule == "layerwise" and not family.supports_layerwise:
        fail("train.schedule", "layerwise", "layer-wise training builds stacked autoencoders: "
             f"use 'joint' with model.kind={config.model.kind!r}")
    _check_architecture(config)
    if not family.variational:
        _refuse_variational_fields(config)
    _check_vae_layers(config, family.variational)
    _check_selection(config, family.selectable_terms, family.variational)
    family.validate(config)
    depth = family.encoder_depth(config.model)
    if config.classifier.encoder_layers > depth:
        fail("classifier.encoder_layers", config.classifier.encoder_layers,
             f"the encoder has {depth} layers (model.hidden_sizes and the code): "
             f"must be 0 (all) to {depth}")


def _check_architecture(config: ml_collections.ConfigDict) -> None:
    """The architecture's fields, and what it cannot do at all (its shapes are checked
    against the data, in `validate_against_data`)."""
    arch = architectures.get(config.model.architecture)
    arch.check_fields(config)
    if config.model.tied_weights and not arch.supports_tied_weights:
        fail("model.tied_weights", True,
             f"model.architecture={arch.name!r} has no tied weights: its decoder layers undo "
             "the pooling and stride of their encoder layers as well as the convolution, so "
             "an encoder kernel is not their transpose; use False")
    if config.train.schedule == "layerwise" and not arch.supports_layerwise:
        fail("train.schedule", "layerwise",
             f"greedy layer-wise training trains dense layers one at a time: use 'joint' "
             f"with model.architecture={arch.name!r}")


# Fields only a family with a latent posterior reads, with the values that leave it off.
_VARIATIONAL_DEFAULTS = {"train.objective": "elbo", "train.num_samples": 1,
                         "train.kl_warmup_epochs": 0, "model.kernel_init": "lecun_normal",
                         "model.encoder_log_var_clip": (), "model.prior": "standard",
                         "model.num_pseudo_inputs": 500}


def _check_vae_layers(config: ml_collections.ConfigDict, variational: bool) -> None:
    """Gated dense layers (the VAE's mlp trunks only) and the log-variance clip's form."""
    if config.model.activation == models.GATED and (not variational
                                                    or config.model.architecture != "mlp"):
        fail("model.activation", models.GATED, "gated dense layers exist in the VAE's mlp "
             "trunks only (model.kind='vae', model.architecture='mlp')")
    clip = config.model.encoder_log_var_clip
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in clip) if isinstance(clip, (tuple, list)) else False
    if not (numbers and (len(clip) == 0 or (len(clip) == 2 and clip[0] < clip[1]))):
        fail("model.encoder_log_var_clip", clip, "must be () (no clip) or (low, high) with "
             "low < high, e.g. --config.model.encoder_log_var_clip='(-6.0, 2.0)'")


PROBE = "validation_probe_accuracy"  # aevb/regimes/probe.py


def _check_selection(config: ml_collections.ConfigDict, terms: tuple[str, ...],
                     variational: bool) -> None:
    """`train.select_on`, `train.select_mode`, `train.patience`: a validation metric the
    family's evaluation gives (or a VAE's probe), on a validation split, in the joint
    schedule."""
    check_choice(config, "train.select_mode", ("min", "max"))
    check_int(config, "train.patience", 0)
    on = config.train.select_on
    if not on:
        if config.train.patience:
            fail("train.patience", config.train.patience, "must be 0 unless train.select_on "
                 "names the validation metric it waits on")
        return
    allowed = [f"validation_{term}" for term in terms] + ([PROBE] if variational else [])
    if on not in allowed:
        fail("train.select_on", on, f"must be '' (the last epoch's parameters) or one of "
             f"{allowed} with model.kind={config.model.kind!r}")
    if on == "validation_neg_iwae_bound" and config.train.objective != "iwae":
        fail("train.select_on", on, "the evaluation has -L_k only when the objective is "
             "L_k: set train.objective='iwae', or select on validation_neg_elbo")
    held_out = config.labels.hold_out and validation_size(config.labels) > 0
    if on == PROBE and not held_out:
        fail("train.select_on", on, "the probe reads the labeled examples and the labeled "
             "validation ones: set labels.hold_out=True and labels.num_validation != 0")
    if on == PROBE and config.train.select_mode != "max":
        fail("train.select_mode", config.train.select_mode, f"must be 'max' with "
             f"train.select_on={PROBE!r}, an accuracy")
    if config.data.num_validation <= 0 and not held_out:
        fail("train.select_on", on, "selects on a validation split: set "
             "data.num_validation (e.g. 10000), or labels.hold_out=True")
    if config.train.schedule != "joint":
        fail("train.select_on", on, "selects in the joint schedule only: use '' with "
             "train.schedule='layerwise'")


def _refuse_variational_fields(config: ml_collections.ConfigDict) -> None:
    for field, default in _VARIATIONAL_DEFAULTS.items():
        if get(config, field) != default:
            fail(field, get(config, field),
                 f"it belongs to models with a latent posterior (model.kind='vae'): leave it "
                 f"at {default!r} with model.kind={config.model.kind!r}")


def _validate_regimes(config: ml_collections.ConfigDict) -> None:
    """The fields of `task`, `train.schedule`, `labels` and `classifier`."""
    check_choice(config, "task", TASKS)
    check_choice(config, "train.schedule", SCHEDULES)
    check_int(config, "train.finetune_epochs", 0)
    if config.train.schedule != "layerwise" and config.train.finetune_epochs:
        fail("train.finetune_epochs", config.train.finetune_epochs,
             "must be 0 unless train.schedule='layerwise' (it fine-tunes an assembled stack)")
    check_int(config, "labels.num", 0)
    check_int(config, "labels.seed", 0, SEED_MAX)
    check_choice(config, "classifier.encoder", CLASSIFIER_ENCODERS)
    check_int(config, "classifier.encoder_layers", 0)
    check_int(config, "classifier.num_steps", 1)
    check_int(config, "classifier.batch_size", 1)
    _check_optimizer(config, "classifier")
    check_int(config, "classifier.eval_every_steps", 1)
    check_int(config, "classifier.patience", 0)
    check_int(config, "labels.num_validation", -1)
    check_choice(config, "labels.hold_out", (False, True))
    if (config.labels.hold_out and validation_size(config.labels) > 0
            and config.data.num_validation > 0):
        fail("labels.hold_out", True, "the labeled validation examples would replace the "
             "validation split of data.num_validation: set data.num_validation=0, or "
             "labels.hold_out=False")
    _validate_semisupervised(config)


SEMISUPERVISED_FEATURES = ("m1", "pixels")


# on the host: inductive (aevb/evaluation/host_classifiers.py), transductive on a graph
# (aevb/evaluation/graph_classifiers.py); M2 through the loop
SEMISUPERVISED_CLASSIFIERS = ("logistic", "mlp", "knn", "svm", "poisson", "poisson_mbo",
                              "laplace", "spreading", "m2")


def _validate_semisupervised(config: ml_collections.ConfigDict) -> None:
    """The fields of `semisupervised` and `m2`."""
    check_choice(config, "semisupervised.features", SEMISUPERVISED_FEATURES)
    check_choice(config, "semisupervised.classifier", SEMISUPERVISED_CLASSIFIERS)
    check_choice(config, "semisupervised.graph_metric", graph_classifiers.METRICS)
    check_int_tuple(config, "semisupervised.graph_neighbors")
    if not config.semisupervised.graph_neighbors:
        fail("semisupervised.graph_neighbors", (), "must name at least one number of "
             "neighbours, e.g. --config.semisupervised.graph_neighbors='(10,)'")
    check_int_tuple(config, "m2.hidden_sizes")
    check_int(config, "m2.latent_dim", 1)
    check_choice(config, "m2.activation", tuple(models.ACTIVATIONS))
    check_number(config, "m2.alpha", 0.0)
    for field in ("num_epochs", "batch_size", "labeled_batch_size"):
        check_int(config, f"m2.{field}", 1)
    check_int(config, "m2.patience", 0)
    check_int(config, "m2.eval_every_epochs", 1)
    _check_optimizer(config, "m2")
    check_choice(config, "m2.architecture", architectures.NAMES)
    if (config.task == "semisupervised" and config.semisupervised.features == "m1"
            and not families.get(config.model.kind).variational):
        fail("model.kind", config.model.kind,
             "semisupervised.features='m1' takes the posterior means of a VAE: use "
             "model.kind='vae', or semisupervised.features='pixels'")
    if config.task == "semisupervised" and config.semisupervised.classifier == "m2":
        _check_m2_architecture(config)


def _check_m2_architecture(config: ml_collections.ConfigDict) -> None:
    """M2's trunks: on M1 codes (vectors, not images) only a dense stack; the
    architecture's own fields when the model's architecture is another."""
    arch = architectures.get(config.m2.architecture)
    if config.semisupervised.features == "m1" and not arch.dense_stack:
        dense = [name for name in architectures.NAMES if architectures.get(name).dense_stack]
        fail("m2.architecture", arch.name,
             f"semisupervised.features='m1' gives M2 the M1 VAE's codes, vectors without an "
             f"image's height and width: use one of {dense}, or "
             "semisupervised.features='pixels'")
    if arch.name != config.model.architecture:
        arch.check_fields(config)


def validate_against_data(config: ml_collections.ConfigDict, num_train: int,
                          image_shape: tuple[int, int, int], has_labels: bool = True) -> None:
    """Checks the fields that depend on the loaded data and the devices; raises ConfigError.

    The architecture's layers against the images' (H, W, C); the classification tasks
    against data without labels; every regime's batch fields: each must split evenly over
    the devices.
    """
    if config.task != "reconstruct" and not has_labels:
        fail("task", config.task, "the data have no labels (an .npz without y_train, or a "
             "folder without class sub-folders): give them labels, or train without them "
             "(task='reconstruct': the VAE and the autoencoders)")
    architectures.get(config.model.architecture).validate(config, tuple(image_shape))
    if config.train.batch_size > num_train:
        fail("train.batch_size", config.train.batch_size,
             f"must be at most the number of training examples ({num_train})")
    parallel.check_batch_divisible(config.train.batch_size, "train.batch_size")
    if config.task == "reconstruct":
        return
    if config.labels.num > num_train:
        fail("labels.num", config.labels.num,
             f"must be at most the number of training examples ({num_train}), or 0 = all")
    num_validation = validation_size(config.labels)
    if config.labels.num == 0 and config.labels.num_validation > 0:
        fail("labels.num_validation", config.labels.num_validation,
             "labels.num=0 labels every training example, which leaves none to validate "
             "on: set labels.num below the training set's size, or num_validation to 0")
    if config.labels.num + num_validation > num_train:
        fail("labels.num_validation", config.labels.num_validation,
             f"with labels.num={config.labels.num} at most "
             f"{num_train - config.labels.num} training examples are left to validate on")
    num_labeled = config.labels.num or num_train
    if config.task == "semisupervised":
        _check_m2_batches(config, num_train, num_labeled, image_shape)
        _check_graph(config, num_train)
        return
    if config.classifier.batch_size > num_labeled:
        fail("classifier.batch_size", config.classifier.batch_size,
             f"must be at most the number of labeled examples ({num_labeled})")
    parallel.check_batch_divisible(config.classifier.batch_size, "classifier.batch_size")


def validation_size(labels: ml_collections.ConfigDict) -> int:
    """The number of labeled validation examples: `labels.num_validation`, where -1 means
    as many as `labels.num` (0 when every example is labeled)."""
    return labels.num if labels.num_validation == -1 else labels.num_validation


def _check_graph(config: ml_collections.ConfigDict, num_train: int) -> None:
    """A graph method's numbers of neighbours against the data: a node's neighbours are
    other examples (the graph also holds the test ones; the training ones bound it here)."""
    neighbors = config.semisupervised.graph_neighbors
    if (config.semisupervised.classifier in graph_classifiers.KINDS
            and max(neighbors) >= num_train):
        fail("semisupervised.graph_neighbors", tuple(neighbors),
             f"each must be below the number of training examples ({num_train})")


def _check_m2_batches(config: ml_collections.ConfigDict, num_train: int,
                      num_labeled: int, image_shape: tuple[int, int, int]) -> None:
    """M2's two batches against the data: the labeled one holds an equal number of each of
    the 10 classes (the paper's balanced batches) and both split over the devices; M2's
    architecture's layers against the images (when the model's architecture is another)."""
    if config.semisupervised.classifier != "m2":
        return
    m2 = config.m2
    if m2.architecture != config.model.architecture:
        architectures.get(m2.architecture).validate(config, tuple(image_shape))
    if m2.batch_size > num_train - num_labeled:
        fail("m2.batch_size", m2.batch_size,
             f"must be at most the number of unlabeled examples ({num_train - num_labeled})")
    if m2.labeled_batch_size > num_labeled:
        fail("m2.labeled_batch_size", m2.labeled_batch_size,
             f"must be at most the number of labeled examples ({num_labeled})")
    parallel.check_batch_divisible(m2.batch_size, "m2.batch_size")
    parallel.check_batch_divisible(m2.labeled_batch_size, "m2.labeled_batch_size")
