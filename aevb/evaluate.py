"""Test-time measurements of a trained VAE: ELBO, importance-sampled log-likelihood, active units.

Everything runs over a whole split in fixed-size chunks inside one compiled `lax.map`, so
memory stays bounded by the chunk size whatever the split size, and Python dispatches once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from aevb import losses, models, objectives


def map_in_chunks(fn: Callable[..., dict[str, jax.Array]], x: jax.Array, key: jax.Array,
                  chunk_size: int) -> dict[str, jax.Array]:
    """Applies a per-example `fn(x_chunk [C, D], key) -> {name: [C]}` over x [N, D].

    x is padded to a multiple of chunk_size; the padded rows are dropped from the result,
    so every output is [N]. Each chunk gets its own key (fold_in of the chunk index).
    """
    n = x.shape[0]
    chunk_size = min(chunk_size, n)
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(num_chunks, chunk_size,
                                                                   *x.shape[1:])
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_chunks))
    out = jax.lax.map(lambda args: fn(*args), (xs, keys))
    return jax.tree.map(lambda a: a.reshape(num_chunks * chunk_size, *a.shape[2:])[:n], out)


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def elbo_terms(model: nn.Module, params, x: jax.Array, key: jax.Array,
               chunk_size: int) -> dict[str, jax.Array]:
    """Per-example -ELBO, reconstruction and KL (nats) [N] of a whole split x [N, D]."""
    return map_in_chunks(functools.partial(objectives.vae_terms, model, params), x, key,
                         chunk_size)


def _iwae_chunk(model: nn.Module, params, num_samples: int, x: jax.Array,
                key: jax.Array) -> dict[str, jax.Array]:
    """L_k for a chunk x [C, D] with k = num_samples: encode once, decode [k, C] codes."""
    mean, log_var = model.apply(params, x, method=model.encode)
    z = models.reparameterize(key, mean, log_var, num_samples)          # [k, C, L]
    decoded = model.apply(params, z, method=model.decode)               # [k, C, D]
    log_p_x_given_z = objectives.reconstruction_log_likelihood(decoded, jnp.broadcast_to(
        x, (num_samples, *x.shape)))                                    # [k, C]
    log_p_z = losses.standard_normal_log_density(z)                     # [k, C]
    log_q_z = losses.gaussian_log_likelihood(z, jnp.broadcast_to(mean, z.shape),
                                             jnp.broadcast_to(log_var, z.shape))
    return {"log_likelihood": losses.importance_weighted_bound(log_p_x_given_z, log_p_z,
                                                               log_q_z)}


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "samples_per_chunk"))
def importance_weighted_log_likelihood(model: nn.Module, params, x: jax.Array, key: jax.Array,
                                       num_samples: int,
                                       samples_per_chunk: int = 20_000) -> jax.Array:
    """The importance-weighted bound L_k (Burda et al. 2015) of log p(x), per example [N].

    L_k = log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): a lower bound that tightens
    towards log p(x) as k grows (L_1 is the ELBO). Chunks of max(1, samples_per_chunk // k)
    examples keep the [k, C, D] decoder output within memory.
    """
    chunk = max(1, samples_per_chunk // num_samples)
    fn = functools.partial(_iwae_chunk, model, params, num_samples)
    return map_in_chunks(fn, x, key, chunk)["log_likelihood"]


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def posterior_means(model: nn.Module, params, x: jax.Array, chunk_size: int) -> jax.Array:
    """E_q[z|x] for every example: [N, L]."""
    def fn(xc, _):
        return {"mean": model.apply(params, xc, method=model.encode)[0]}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size)["mean"]


def active_units(means: jax.Array, threshold: float = 0.01) -> tuple[int, jax.Array]:
    """Latent units whose posterior mean varies with x: Cov_x(E_q[z_u]) > threshold.

    means [N, L] -> (count, per-unit variance [L]). The criterion of Burda et al. (2015):
    an inactive unit encodes nothing, its posterior equals the prior for every input.
    """
    variance = jnp.var(means, axis=0)
    return int(jnp.sum(variance > threshold)), variance
