"""Test-time measurements: a VAE's ELBO, importance-sampled log-likelihood and active units;
an autoencoder's reconstruction error, its PCA baseline and its code's sparsity.

Everything runs over a whole split in fixed-size chunks inside one compiled `lax.map`, so
memory stays bounded by the chunk size whatever the split size, and Python dispatches once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from aevb import losses, models, noise, objectives, parallel


def map_in_chunks(fn: Callable[..., dict[str, jax.Array]], x: jax.Array, key: jax.Array,
                  chunk_size: int, mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """Applies a per-example `fn(x_chunk [C, D], key) -> {name: [C, ...]}` over x [N, D].

    x is padded to a multiple of chunk_size; the padded rows are dropped from the result,
    so every output is [N, ...]. Each chunk gets its own key (fold_in of the chunk index).
    With a mesh, each chunk is split over the devices (when C divides evenly).
    """
    n = x.shape[0]
    chunk_size = min(chunk_size, n)
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(num_chunks, chunk_size,
                                                                   *x.shape[1:])
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_chunks))
    out = jax.lax.map(lambda args: fn(parallel.shard_batch(args[0], mesh), args[1]), (xs, keys))
    return jax.tree.map(lambda a: a.reshape(num_chunks * chunk_size, *a.shape[2:])[:n], out)


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def elbo_terms(model: nn.Module, params, x: jax.Array, key: jax.Array,
               chunk_size: int, mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """Per-example -ELBO, reconstruction and KL (nats) [N] of a whole split x [N, D]."""
    return map_in_chunks(functools.partial(objectives.vae_terms, model, params), x, key,
                         chunk_size, mesh)


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


@functools.partial(jax.jit,
                   static_argnames=("model", "num_samples", "samples_per_chunk", "mesh"))
def importance_weighted_log_likelihood(model: nn.Module, params, x: jax.Array, key: jax.Array,
                                       num_samples: int, samples_per_chunk: int = 20_000,
                                       mesh: Mesh | None = None) -> jax.Array:
    """The importance-weighted bound L_k (Burda et al. 2015) of log p(x), per example [N].

    L_k = log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): a lower bound that tightens
    towards log p(x) as k grows (L_1 is the ELBO). Chunks of max(1, samples_per_chunk // k)
    examples keep the [k, C, D] decoder output within memory.
    """
    chunk = max(1, samples_per_chunk // num_samples)
    fn = functools.partial(_iwae_chunk, model, params, num_samples)
    return map_in_chunks(fn, x, key, chunk, mesh)["log_likelihood"]


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def posterior_means(model: nn.Module, params, x: jax.Array, chunk_size: int,
                    mesh: Mesh | None = None) -> jax.Array:
    """E_q[z|x] for every example: [N, L]."""
    def fn(xc, _):
        return {"mean": model.apply(params, xc, method=model.encode)[0]}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size, mesh)["mean"]


def active_units(means: jax.Array, threshold: float = 0.01) -> tuple[int, jax.Array]:
    """Latent units whose posterior mean varies with x: Cov_x(E_q[z_u]) > threshold.

    means [N, L] -> (count, per-unit variance [L]). The criterion of Burda et al. (2015):
    an inactive unit encodes nothing, its posterior equals the prior for every input.
    """
    variance = np.var(parallel.fetch(means), axis=0)
    return int(np.sum(variance > threshold)), variance


# ----------------------------------------------------------------------------- autoencoders

@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "noise_kind", "mesh"))
def reconstruction_terms(model: nn.Module, params, x: jax.Array, key: jax.Array,
                         chunk_size: int, noise_kind: str = "none", noise_std: float = 0.0,
                         noise_rate: float = 0.0, mesh: Mesh | None = None
                         ) -> dict[str, jax.Array]:
    """An autoencoder's reconstruction of a whole split x [N, D] against the clean x.

    Returns per-example `mse` and `cross_entropy` (both per pixel) [N] and the `code`
    [N, code_dim]. With a noise kind, the input is corrupted first (one fixed key per
    chunk): how well the model restores corrupted images.
    """
    def fn(xc, k):
        out = model.apply(params, noise.corrupt(xc, noise_kind, k, noise_std, noise_rate))
        terms = {"mse": losses.mean_squared_error(out["x_hat"], xc), "code": out["code"]}
        if model.output_activation == "sigmoid":
            terms["cross_entropy"] = losses.bernoulli_cross_entropy(out["logits"], xc) / xc.shape[-1]
        return terms
    return map_in_chunks(fn, x, key, chunk_size, mesh)


def pca_reconstruction_mse(train_x: np.ndarray, test_x: np.ndarray, num_components: int
                           ) -> float:
    """Per-pixel MSE on test_x [M, D] of the best rank-k linear code fitted on train_x [N, D].

    PCA: project the centred data on the top-k eigenvectors of the training covariance and
    back. The error a linear undercomplete autoencoder with a k-unit code can at best reach.
    """
    train_x = np.asarray(train_x, np.float64)
    mean = train_x.mean(axis=0)
    cov = np.cov(train_x - mean, rowvar=False)
    _, vectors = np.linalg.eigh(cov)
    top = vectors[:, ::-1][:, :num_components]
    centred = np.asarray(test_x, np.float64) - mean
    recon = centred @ top @ top.T
    return float(np.mean((recon - centred) ** 2))


def cached_pca_mse(cache_key: str, train_x: np.ndarray, test_x: np.ndarray,
                   num_components: int) -> float:
    """`pca_reconstruction_mse`, computed once per dataset and code size and kept on disk.

    train_x may be uint8 pixels [N, D]; they are scaled to [0, 1] only when the value is
    not cached yet.

    The cache is a JSON file in $AEVB_CACHE_DIR (default ~/.cache/aevb) keyed by
    `cache_key` (the dataset, its binarization and split) and the number of components.
    """
    cache_dir = os.environ.get("AEVB_CACHE_DIR", os.path.expanduser("~/.cache/aevb"))
    path = os.path.join(cache_dir, "pca_mse.json")
    name = f"{cache_key}/k={num_components}"
    cache = {}
    if os.path.exists(path):
        with open(path) as f:
            cache = json.load(f)
    if name not in cache:
        train_x = np.asarray(train_x)
        if train_x.dtype == np.uint8:
            train_x = train_x.astype(np.float32) / 255.0
        cache[name] = pca_reconstruction_mse(train_x, test_x, num_components)
        os.makedirs(cache_dir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
    return cache[name]


def code_statistics(codes: np.ndarray, near_zero: float = 0.05) -> dict[str, float]:
    """How sparse a code is: codes [N, J] of sigmoid units.

    `code_mean_activation`: mean over units of rho_hat_j (unit j's mean activation);
    `code_activation_spread`: standard deviation of rho_hat_j across units;
    `code_fraction_near_zero`: fraction of all activations below `near_zero`.
    """
    codes = np.asarray(codes)
    rho_hat = codes.mean(axis=0)
    return {"code_mean_activation": float(rho_hat.mean()),
            "code_activation_spread": float(rho_hat.std()),
            "code_fraction_near_zero": float(np.mean(codes < near_zero))}


# ----------------------------------------------------------------------------- per run

def evaluate_splits(config, model: nn.Module, params, splits: dict[str, jax.Array],
                    key: jax.Array, mesh: Mesh | None = None) -> dict[str, float]:
    """The periodic evaluation: means over each split (inputs [N, D]) as `<split>_<metric>`.

    VAE: `neg_elbo`, `recon`, `kl` (nats per example). Autoencoder: `mse` and, with a
    sigmoid output, `cross_entropy` (both per pixel), of clean inputs.
    """
    metrics = {}
    for name, x in splits.items():
        if config.model.kind == "vae":
            terms = elbo_terms(model, params, x, key, config.eval.batch_size, mesh)
            terms["neg_elbo"] = terms.pop("loss")
        else:
            terms = reconstruction_terms(model, params, x, key, config.eval.batch_size,
                                         mesh=mesh)
            terms.pop("code")
        means = parallel.fetch({k: jnp.mean(v) for k, v in terms.items()})
        metrics.update({f"{name}_{k}": float(v) for k, v in means.items()})
    return metrics


def final_metrics(config, model: nn.Module, params, test_x: jax.Array, train_x: np.ndarray,
                  key: jax.Array, cache_key: str, mesh: Mesh | None = None
                  ) -> dict[str, float | int]:
    """End-of-run measurements on the test inputs test_x [N, D].

    VAE: `test_log_likelihood` (L_k on the first eval.iwae_num_examples examples) and
    `active_units`. Autoencoder: `pca_mse` (PCA with the same code size, fitted on train_x,
    the training pixels [N, D], uint8 or in [0, 1]),
    with noise `test_denoising_mse` (corrupted test inputs restored, against the clean ones)
    and `test_corrupted_mse` (the corrupted inputs themselves), and with sigmoid codes the
    `code_statistics`.
    """
    out: dict[str, float | int] = {}
    if config.model.kind == "vae":
        n = min(config.eval.iwae_num_examples, test_x.shape[0])
        if n:
            ll = importance_weighted_log_likelihood(
                model, params, test_x[:n], key, config.eval.iwae_k,
                config.eval.iwae_samples_per_chunk, mesh)
            out.update({"test_log_likelihood": float(parallel.fetch(jnp.mean(ll))),
                        "test_log_likelihood_k": config.eval.iwae_k,
                        "test_log_likelihood_examples": n})
        means = posterior_means(model, params, test_x, config.eval.batch_size, mesh)
        out["active_units"], _ = active_units(means)
        return out

    out["pca_mse"] = cached_pca_mse(cache_key, train_x, parallel.fetch(test_x),
                                    config.model.latent_dim)
    if config.noise.kind != "none":
        noise_kw = {"noise_kind": config.noise.kind, "noise_std": config.noise.std,
                    "noise_rate": config.noise.rate}
        restored = reconstruction_terms(model, params, test_x, key, config.eval.batch_size,
                                        mesh=mesh, **noise_kw)
        out["test_denoising_mse"] = float(parallel.fetch(jnp.mean(restored["mse"])))
        corrupted = jax.jit(lambda x, k: jnp.mean(map_in_chunks(
            lambda xc, kc: {"mse": losses.mean_squared_error(
                noise.corrupt(xc, config.noise.kind, kc, config.noise.std, config.noise.rate),
                xc)}, x, k, config.eval.batch_size, mesh)["mse"]))(test_x, key)
        out["test_corrupted_mse"] = float(parallel.fetch(corrupted))
    if config.model.code_activation == "sigmoid":
        codes = reconstruction_terms(model, params, test_x, key, config.eval.batch_size,
                                     mesh=mesh)["code"]
        out.update(code_statistics(parallel.fetch(codes)))
    return out
