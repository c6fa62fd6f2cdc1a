"""Per-example objectives: a model's outputs scored by the losses of `aevb/losses.py`.

An objective is `fn(params, x, key) -> dict of per-example arrays [B]`; the training loss is
the batch mean of its `loss` entry. Keeping them per-example lets evaluation reuse the very
same function over a test set in chunks, and lets tests compare batched with per-example.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

from aevb import losses

Objective = Callable[..., dict[str, jax.Array]]


def reconstruction_log_likelihood(decoded: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """log p(x|z) per example [B] from the decoder's parameters (Bernoulli or Gaussian)."""
    if "logits" in decoded:
        return losses.bernoulli_log_likelihood(decoded["logits"], x)
    return losses.gaussian_log_likelihood(x, decoded["x_mean"], decoded["x_log_var"])


def vae_terms(model: nn.Module, params, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    """One-sample ELBO of a batch x [B, D] and its parts, each per example [B].

    `recon` = -log p(x|z) with z ~ q(z|x) (reparameterized), `kl` = KL(q(z|x) || N(0, I))
    in closed form, `loss` = recon + kl = -ELBO (nats).
    """
    out = model.apply(params, x, key)
    log_lik = reconstruction_log_likelihood(out, x)
    kl = losses.kl_standard_normal(out["mean"], out["log_var"])
    return {"loss": -losses.elbo(log_lik, kl), "recon": -log_lik, "kl": kl}
