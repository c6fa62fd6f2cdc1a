"""Sparse autoencoder: 784-100-300 with a sigmoid code pushed to 10% mean activation.

The loss adds weight * sum_j KL(0.1 || rho_hat_j), rho_hat_j being coding unit j's mean
activation over the batch (Géron's chapter: 300 sigmoid codings, target 0.1, weight 5e-3).
The summary adds the code's mean activation, its spread across units and the fraction of
activations near zero; `code_activations.png` is their histogram against the target.

    python launch.py --config=experiments/sparse.py
    python launch.py --config=experiments/sparse.py:l1          # L1 activity penalty instead
    python launch.py --config=experiments/sparse.py:denoising   # sparse + masking noise
    python launch.py --config=experiments/sparse.py --sweep --workdir=runs/sparse-sweep

Variants: `l1`, `denoising`, `runlocal`.

The model: docs/autoencoders.md. Measured: the README's experiments table (headline),
docs/results.md, docs/sweeps.md (the target x weight sweep, with code statistics).
"""

import ml_collections

from aevb import sweeps
from aevb.config import defaults
from experiments import stacked


def _l1(config: ml_collections.ConfigDict) -> None:
    config.sparsity.kind = "l1"
    config.sparsity.weight = 1e-4


def _denoising(config: ml_collections.ConfigDict) -> None:
    config.noise.kind = "masking"
    config.noise.rate = 0.3


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = stacked.get_config()
    config.experiment = "sparse"
    config.model.latent_dim = 300
    config.model.code_activation = "sigmoid"
    config.sparsity.kind = "kl"
    config.sparsity.target = 0.1
    config.sparsity.weight = 5e-3
    return defaults.apply_variants(config, variant, "experiments/sparse.py",
                                  {"l1": _l1, "denoising": _denoising})


def get_sweep(name: str = "") -> list[dict]:
    """The default sweep (`--sweep`): sparsity target x weight, 9 trials that differ only in
    floats, so they train as one."""
    return sweeps.named(name, {"": lambda: sweeps.product(
        {"sparsity.target": [0.05, 0.1, 0.2], "sparsity.weight": [1e-3, 5e-3, 2e-2]})},
        "experiments/sparse.py")
