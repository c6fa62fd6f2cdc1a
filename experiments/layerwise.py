"""Greedy layer-wise training of the deep stack 784-1000-500-250-30 (one layer at a time).

Phase 1 trains a 784-1000-784 autoencoder on the pixels, phase 2 a 1000-500-1000 one on the
first layer's codes, and so on up to 250-30-250; the four are then one deep autoencoder
(encoder layers in order, decoders in reverse), fine-tuned end to end for a few epochs.
`train.num_epochs` is the number of epochs of each phase. See aevb/regimes/layerwise.py.

    python launch.py --config=experiments/layerwise.py
    python launch.py --config=experiments/layerwise.py:denoising  # stacked denoising AE
    python launch.py --config=experiments/layerwise.py:sparse     # stacked sparse AE (UFLDL)
    python launch.py --config=experiments/layerwise.py --config.train.finetune_epochs=0

Variants: `tied` (W' = W^T in every layer), `denoising` (masking noise, 25% of each phase's
inputs switched off: Vincent et al. 2010), `sparse` (784-200-200 sigmoid layers, each code
pushed to 10% mean activation: the stacked sparse autoencoder of the UFLDL notes),
`runlocal`.

How it trains, and layer-wise against end-to-end (`python -m benchmarks.layerwise`):
docs/layerwise.md. Measured: the README's experiments table (headline) and
docs/layerwise.md.
"""

import ml_collections

from aevb.config import defaults
from experiments import stacked


def _tied(config: ml_collections.ConfigDict) -> None:
    config.model.tied_weights = True


def _denoising(config: ml_collections.ConfigDict) -> None:
    config.noise.kind = "masking"
    config.noise.rate = 0.25


def _sparse(config: ml_collections.ConfigDict) -> None:
    config.model.hidden_sizes = (200,)
    config.model.latent_dim = 200
    config.model.activation = "sigmoid"
    config.model.code_activation = "sigmoid"
    config.sparsity.kind = "kl"
    config.sparsity.target = 0.1
    config.sparsity.weight = 5e-3


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = stacked.get_config()
    stacked.deep_stack(config)           # the deep widths, trained as the stack is
    config.experiment = "layerwise"
    config.train.schedule = "layerwise"
    config.train.num_epochs = 5          # per phase
    config.train.finetune_epochs = 10
    return defaults.apply_variants(config, variant, "experiments/layerwise.py",
                                  {"tied": _tied, "denoising": _denoising, "sparse": _sparse})
