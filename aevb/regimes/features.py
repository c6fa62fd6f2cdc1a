"""The features the semi-supervised regime's classifiers see (`semisupervised.features`):
M1's posterior means (the VAE trained first, `m1_features`, in `m1_workdir`) or the
images themselves (`pixel_features`). See aevb/regimes/semisupervised.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aevb import families
from aevb.config.checks import ConfigError
from aevb.models.distributions import Gaussian
from aevb.regimes import classifier, pretrain
from aevb.regimes.prepare import flat_images
from aevb.run import parallel


@dataclasses.dataclass
class Features:
    """What the classifiers see, for every training example and the test set.

    train: M2's training inputs [N, ...]: uint8 pixels, or M1's posterior means and
      log-variances side by side [N, 2F]; `prepare(batch, key)` makes model inputs of a
      batch of them (binarization, or a sample of q(z1|x)).
    train_eval, test: fixed inputs [N, F] / [M, F] for classification (grey levels, or
      posterior means). likelihood: M2's p(x|y, z) on them. to_pixels: features [..., F] ->
      images [..., D] for the pictures. shape: a feature vector's shape for M2's trunks:
      the images' (H, W, C), or (1, 1, F) for codes.
    """

    train: np.ndarray
    prepare: str | Callable[[jax.Array, jax.Array], jax.Array]
    train_eval: np.ndarray
    test: np.ndarray
    likelihood: str
    to_pixels: Callable[[jax.Array], jax.Array]
    summary: dict[str, Any]
    shape: tuple[int, int, int]


def m1_features(config: ml_collections.ConfigDict, workdir: str, datasets,
                train_autoencoder: Callable[[ml_collections.ConfigDict, str], dict]
                ) -> Features:
    """M1: the VAE of `model.*` trained (or resumed) in `<workdir>/m1` on the training
    images only; its posterior's active units as features."""
    summary, params = pretrain.pretrain_autoencoder(
        config, m1_workdir(config, workdir), datasets.image_shape, train_autoencoder)
    family = families.get(config.model.kind)
    model = family.make_model(config.model, datasets.image_shape)

    def grey(split):
        return classifier.inputs(jnp.asarray(flat_images(split)), config.data.binarize)
    train = parallel.fetch(family.posterior(config, model, params, grey(datasets.train)))
    test = parallel.fetch(family.posterior(config, model, params, grey(datasets.test)))
    active = family.active_units(train["mean"])
    if not active.any():
        raise ConfigError("config field model.latent_dim: the M1 VAE has no active latent "
                          "unit, so its features carry nothing; train it longer")
    latent = config.model.latent_dim

    def to_pixels(codes: jax.Array) -> jax.Array:
        full = jnp.zeros((*codes.shape[:-1], latent)).at[..., np.flatnonzero(active)].set(codes)
        return model.apply(params, full, method=model.generate)

    def sample(batch: jax.Array, key: jax.Array) -> jax.Array:  # z1 ~ q(z1|x), [B, F]
        return Gaussian(*jnp.split(batch, 2, axis=-1)).sample(key)

    def keep(part):
        return part[:, active]
    return Features(
        train=np.concatenate([keep(train["mean"]), keep(train["log_var"])], axis=1),
        prepare=sample, train_eval=keep(train["mean"]), test=keep(test["mean"]),
        likelihood="gaussian", to_pixels=to_pixels,
        summary={**{f"m1_{k}": v for k, v in summary.items()},
                 "m1_active_units": int(active.sum())}, shape=(1, 1, int(active.sum())))


def m1_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Where M1 trains: `<workdir>/m1`, or `<workdir>/../m1/<semisupervised.m1_workdir>`,
    which the runs that need the same M1 share (a sweep's trials of one draw, e.g.
    `probe-seed0-labels100`; the sweep's report skips `m1/`, no trial): the first trains
    it, the others wait for it and load it."""
    shared = config.semisupervised.m1_workdir
    parent = os.path.dirname(os.path.abspath(workdir))
    return os.path.join(workdir, "m1") if not shared else os.path.join(parent, "m1", shared)


def pixel_features(config: ml_collections.ConfigDict, datasets) -> Features:
    """The images: uint8 for M2 (binarized per batch under `data.binarize`, dynamically
    in the paper), grey levels for classification."""

    def grey(split):
        return np.asarray(classifier.inputs(jnp.asarray(flat_images(split)),
                                            config.data.binarize))
    return Features(train=flat_images(datasets.train), prepare=config.data.binarize,
                    train_eval=grey(datasets.train), test=grey(datasets.test),
                    likelihood="bernoulli", to_pixels=lambda x: x, summary={},
                    shape=tuple(datasets.image_shape))
