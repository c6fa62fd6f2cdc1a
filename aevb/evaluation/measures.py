"""Evaluation machinery every family shares: chunked maps over a split, the periodic
evaluation of the splits, and the reference measurements (PCA, code sparsity).

Everything runs over a whole split in fixed-size chunks inside one compiled `lax.map`, so
memory stays bounded by the chunk size whatever the split size, and Python dispatches once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from aevb import data
from aevb.run import parallel


@dataclasses.dataclass(frozen=True)
class EvalData:
    """What the evaluations of a run read, prepared once per run.

    splits: model inputs float32 [N, D] on every device, `test` (and `validation`),
      binarized once with fixed keys so every evaluation and trial scores the same inputs.
    train_inputs: the training set as the model sees it, float32 [N, D] on the host,
      computed only when asked (the PCA baseline, on a cache miss).
    identity: the dataset, its directory, binarization and split: the PCA cache key.
    image_shape: (H, W, C).
    """

    splits: dict[str, jax.Array]
    train_inputs: Callable[[], np.ndarray]
    identity: str
    image_shape: tuple[int, int, int]


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


def samples_per_block(num_samples: int, chunk_examples: int, codes_per_block: int) -> int:
    """b, the largest divisor of k = num_samples with b x chunk_examples <= codes_per_block
    (at least 1): a chunk's [k, C] samples are processed as k / b blocks of [b, C]."""
    cap = max(1, codes_per_block // chunk_examples)
    return max(b for b in range(1, min(num_samples, cap) + 1) if num_samples % b == 0)


def split_evaluations(eval_terms: Callable[..., dict[str, jax.Array]],
                      splits: dict[str, jax.Array], test_while_training: bool,
                      mesh: Mesh | None = None, trials: bool = False
                      ) -> tuple[Callable[[Any, Any], dict[str, Any]],
                                 Callable[[Any, Any], dict[str, Any]] | None]:
    """(periodic, reported): a phase's `evaluate(params, key)` and `evaluate_reported`
    (`evaluate_splits` over `splits`). With `test_while_training` (`eval.test_while_training`)
    both read every split (reported None: the same); without it the periodic evaluation
    leaves out the test split, which is then read once, for the parameters the phase
    reports (the selected ones). The keys of the other splits' evaluations do not change."""
    def over(chosen: dict[str, jax.Array]) -> Callable[[Any, Any], dict[str, Any]]:
        return lambda params, key: evaluate_splits(eval_terms, params, chosen, key, mesh,
                                                   trials)

    if test_while_training:
        return over(splits), None
    return over({k: v for k, v in splits.items() if k != "test"}), over(splits)


def evaluate_splits(eval_terms: Callable[..., dict[str, jax.Array]], params: Any,
                    splits: dict[str, jax.Array], key: jax.Array, mesh: Mesh | None = None,
                    trials: bool = False) -> dict[str, Any]:
    """The periodic evaluation: the mean of every term over each split, as `<split>_<term>`.

    `eval_terms(params, x [N, D], key, mesh) -> {term: [N]}` is the family's. With
    `trials`, params and key carry a leading trial axis [T] and every value is [T] (the
    evaluation is vmapped; the trial axis is the one split over devices, so no mesh).
    """
    def means(p, k, x, m):
        return jax.tree.map(jnp.mean, eval_terms(p, x, k, m))

    metrics: dict[str, Any] = {}
    for name, x in splits.items():
        if trials:
            values = jax.vmap(lambda p, k, x=x: means(p, k, x, None))(params, key)
        else:
            values = means(params, key, x, mesh)
        for term, v in parallel.fetch(values).items():
            metrics[f"{name}_{term}"] = v if trials else float(v)
    return metrics


# ----------------------------------------------------------------------------- references

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


def cached_pca_mse(cache_key: str, train_x: Callable[[], np.ndarray], test_x: np.ndarray,
                   num_components: int) -> float:
    """`pca_reconstruction_mse`, computed once per dataset and code size and kept on disk.

    `train_x()` gives the training inputs [N, D]; it is called only when the value is not
    cached yet. The cache is a JSON file in $AEVB_CACHE_DIR (default ~/.cache/aevb) keyed
    by `cache_key` (the dataset, its binarization and split) and the number of components.
    """
    cache_dir = data.cache_root()
    path = os.path.join(cache_dir, "pca_mse.json")
    name = f"{cache_key}/k={num_components}"
    cache = {}
    if os.path.exists(path):
        with open(path) as f:
            cache = json.load(f)
    if name not in cache:
        cache[name] = pca_reconstruction_mse(train_x(), test_x, num_components)
        os.makedirs(cache_dir, exist_ok=True)
        # Atomic replace: a reader in another process sees the old file or the new one.
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
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
