"""Per-example objectives: a model's outputs scored by the losses of `aevb/losses.py`.

An objective is `fn(params, x, key) -> dict of per-example arrays [B]`; the training loss is
the batch mean of its `loss` entry. Keeping them per-example lets evaluation reuse the very
same function over a test set in chunks, and lets tests compare batched with per-example.
Noise and sparsity are regimes of any objective: `make(config, model, train)` binds them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aevb import losses, noise

Objective = Callable[[object, jax.Array, jax.Array], dict[str, jax.Array]]
RECONSTRUCTION_LOSSES = ("mse", "cross_entropy")
SPARSITY_KINDS = ("none", "kl", "l1")


def reconstruction_log_likelihood(decoded: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """log p(x|z) per example [B] from the decoder's parameters (Bernoulli or Gaussian)."""
    if "logits" in decoded:
        return losses.bernoulli_log_likelihood(decoded["logits"], x)
    return losses.gaussian_log_likelihood(x, decoded["x_mean"], decoded["x_log_var"])


def vae_terms(model: nn.Module, params, x: jax.Array, key: jax.Array,
              noise_kind: str = "none", noise_std: float = 0.0,
              noise_rate: float = 0.0, kl_weight: float = 1.0) -> dict[str, jax.Array]:
    """One-sample ELBO of a batch x [B, D] and its parts, each per example [B].

    `recon` = -log p(x|z) with z ~ q(z|x~) (reparameterized), `kl` = KL(q(z|x~) || N(0, I))
    in closed form, `loss` = recon + kl_weight * kl, which is -ELBO (nats) for the default
    kl_weight = 1 (other weights: the beta-VAE objective). x~ is x corrupted by the noise
    regime (a denoising VAE); with `noise_kind='none'` x~ = x and this is the ELBO of x.
    """
    noise_key, sample_key = jax.random.split(key)
    x_in = noise.corrupt(x, noise_kind, noise_key, noise_std, noise_rate)
    out = model.apply(params, x_in, sample_key)
    log_lik = reconstruction_log_likelihood(out, x)
    kl = losses.kl_standard_normal(out["mean"], out["log_var"])
    loss = kl_weight * kl - log_lik  # = -losses.elbo(log_lik, kl) when kl_weight = 1
    return {"loss": loss, "recon": -log_lik, "kl": kl}


def autoencoder_terms(model: nn.Module, params, x: jax.Array, key: jax.Array,
                      reconstruction_loss: str = "mse", noise_kind: str = "none",
                      noise_std: float = 0.0, noise_rate: float = 0.0,
                      sparsity_kind: str = "none", sparsity_target: float = 0.1,
                      sparsity_weight: float = 0.0) -> dict[str, jax.Array]:
    """Reconstruction loss of a batch x [B, D] with optional noise and sparsity, each [B].

    `recon` is per pixel (mean over D), as Keras reports it, so `sparsity_weight` means what
    it means in Géron's chapter: mean-squared error (or binary cross-entropy) per pixel plus
    weight * penalty. The input is corrupted by the noise regime; the loss compares the
    reconstruction with the clean x. Sparsity penalties act on the code:
      kl: sum_j KL(target || rho_hat_j), rho_hat_j = unit j's mean activation over the batch.
          A batch statistic: every example carries the same value, so the batch mean of
          `loss` is mean(recon) + weight * penalty.
      l1: sum_j |code_j| per example.
    """
    x_in = noise.corrupt(x, noise_kind, key, noise_std, noise_rate)
    out = model.apply(params, x_in)
    if reconstruction_loss == "mse":
        recon = losses.mean_squared_error(out["x_hat"], x)
    else:
        recon = losses.bernoulli_cross_entropy(out["logits"], x) / x.shape[-1]
    if sparsity_kind == "kl":
        penalty = jnp.broadcast_to(losses.kl_sparsity_penalty(out["code"], sparsity_target),
                                   recon.shape)
    elif sparsity_kind == "l1":
        penalty = losses.l1_activity_penalty(out["code"])
    else:
        penalty = jnp.zeros_like(recon)
    return {"loss": recon + sparsity_weight * penalty, "recon": recon, "sparsity": penalty}


# Float fields an objective reads; `make` takes traced values for them (vectorized sweeps).
FLOAT_FIELDS = ("noise.std", "noise.rate", "model.kl_weight", "sparsity.target",
                "sparsity.weight")


def make(config: ml_collections.ConfigDict, model: nn.Module, train: bool,
         hparams: dict[str, jax.Array] | None = None) -> Objective:
    """The objective of `config.model.kind` with its regimes bound: `fn(params, x, key)`.

    With `train=False` the noise is off (evaluation scores clean inputs). `hparams` maps
    some of FLOAT_FIELDS to (possibly traced) values that replace the config's.
    """
    value = {f: (hparams or {}).get(f, config[f.split(".")[0]][f.split(".")[1]])
             for f in FLOAT_FIELDS}
    noise_kw = {"noise_kind": config.noise.kind if train else "none",
                "noise_std": value["noise.std"], "noise_rate": value["noise.rate"]}
    if config.model.kind == "vae":
        return functools.partial(vae_terms, model, kl_weight=value["model.kl_weight"],
                                 **noise_kw)
    return functools.partial(
        autoencoder_terms, model, reconstruction_loss=config.model.reconstruction_loss,
        sparsity_kind=config.sparsity.kind, sparsity_target=value["sparsity.target"],
        sparsity_weight=value["sparsity.weight"], **noise_kw)
