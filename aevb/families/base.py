"""What a model family supplies to the regimes: the one interface every family implements.

A family (the VAE, the autoencoder) owns everything that depends on its model: the module
(its heads on the trunks of `model.architecture`, `aevb/architectures/`), the per-example
objective, the periodic evaluation terms, the end-of-run measurements, the pictures, and
the encoder that pretraining reuses. Regimes (`aevb/regimes/`) only call these methods, so
a new family is one new file plus one line in `aevb/families/__init__.py`
(docs/extending.md).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from aevb.architectures.base import ImageShape
from aevb.evaluation.measures import EvalData

Params = Any
# fn(params, x [B, D], key, step=None) -> per-example terms {name: [B]}; the training loss
# is the batch mean of "loss". `step` is the optimizer step of the update being computed
# (None outside training): what a warm-up reads.
Objective = Callable[..., dict[str, jax.Array]]


def compiled(model: nn.Module, method: Callable | None = None) -> Callable[..., Any]:
    """`model.apply(params, *args, method=method)` as one compiled program. Pictures apply a
    model once per run: op by op, each of its operations would be compiled on its own (for
    a small conv model, seconds)."""
    return jax.jit(functools.partial(model.apply, method=method))


class Family(abc.ABC):
    """The parts of one model family (`model.kind`)."""

    kind: str
    # The periodic evaluation's main per-example term, shown in progress lines as test_<name>.
    headline: str
    # The evaluation's terms a run may select its parameters on (`train.select_on`).
    selectable_terms: tuple[str, ...] = ()
    # Float fields the objective reads; vectorized sweeps pass traced values for them.
    float_fields: tuple[str, ...] = ()
    supports_sparsity: bool = False
    supports_layerwise: bool = False
    # A latent posterior q(z|x): the k-sample objectives, the KL warm-up, `model.kernel_init`.
    variational: bool = False

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Checks the fields only this family reads; raises checks.ConfigError."""

    @abc.abstractmethod
    def make_model(self, model_config: ml_collections.ConfigDict,
                   image_shape: ImageShape) -> nn.Module:
        """The Flax module `model` asks for, in its `model.architecture`, for images of
        `image_shape` (H, W, C) that enter flattened: [..., H * W * C]."""

    @abc.abstractmethod
    def init_params(self, model: nn.Module, key: jax.Array, image_shape: ImageShape) -> Params:
        """Fresh parameters from `key` (the run's init key)."""

    @abc.abstractmethod
    def objective(self, config: ml_collections.ConfigDict, model: nn.Module, train: bool,
                  hparams: dict[str, jax.Array] | None = None,
                  steps_per_epoch: int = 0) -> Objective:
        """The per-example objective with the noise (if `train`) and other regimes bound.

        `hparams` maps some of `float_fields` to (possibly traced) values replacing the
        config's. `steps_per_epoch` turns epoch-counted warm-ups into steps.
        """

    @abc.abstractmethod
    def eval_terms(self, config: ml_collections.ConfigDict, model: nn.Module, params: Params,
                   x: jax.Array, key: jax.Array, mesh: Mesh | None) -> dict[str, jax.Array]:
        """Per-example evaluation terms {name: [N]} of a whole split x [N, D] (clean inputs)."""

    @abc.abstractmethod
    def final_metrics(self, config: ml_collections.ConfigDict, model: nn.Module,
                      params: Params, data: EvalData, key: jax.Array,
                      mesh: Mesh | None) -> dict[str, float | int]:
        """End-of-run measurements on the test split (beyond the periodic evaluation)."""

    @abc.abstractmethod
    def pictures(self, config: ml_collections.ConfigDict, model: nn.Module, params: Params,
                 test_x: jax.Array, image_shape: tuple[int, int, int], key: jax.Array,
                 workdir: str) -> list[str]:
        """Draws the run's pictures into `workdir`; returns their paths."""

    @abc.abstractmethod
    def encoder_depth(self, model_config: ml_collections.ConfigDict) -> int:
        """How many encoder layers `encoder` can export (classifier.encoder_layers <= it)."""

    @abc.abstractmethod
    def encoder(self, model_config: ml_collections.ConfigDict, image_shape: ImageShape,
                params: Params | None, num_layers: int = 0) -> tuple[nn.Module, Params | None]:
        """The lower `num_layers` (0 = all) encoder layers as (module, its parameters).

        The module maps x [..., D] to features [..., F]; with `params=None` only the module
        (for a classifier trained from scratch). Pretraining puts a head on it.
        """

    def forward_flops(self, model_config: ml_collections.ConfigDict, image_shape: ImageShape
                      ) -> tuple[list[float], list[float]]:
        """Forward FLOPs of one example through each convolution or matmul of the model's
        (encoder, decoder), input side first (a multiply-add counts 2)."""
        raise NotImplementedError(f"model.kind={self.kind!r} counts no FLOPs")

    def posterior(self, config: ml_collections.ConfigDict, model: nn.Module, params: Params,
                  x: jax.Array) -> dict[str, jax.Array]:
        """A `variational` family's q(z|x) for every example x [N, D]: {'mean', 'log_var'},
        each [N, L] (M1's features in `task=semisupervised`)."""
        raise NotImplementedError(f"model.kind={self.kind!r} has no latent posterior")

    def active_units(self, means: np.ndarray) -> np.ndarray:
        """Which latent units [L] (bool) of posterior means [N, L] carry information (vary
        with x); a `variational` family's."""
        raise NotImplementedError(f"model.kind={self.kind!r} has no latent posterior")
