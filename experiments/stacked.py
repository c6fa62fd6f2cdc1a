"""Stacked (deep) autoencoder on Fashion-MNIST grey levels: 784-100-30-100-784.

The stack of Géron's chapter: ReLU layers symmetric around a 30-unit code, MSE per pixel.

    python launch.py --config=experiments/stacked.py
    python launch.py --config=experiments/stacked.py:tied   # W' = W^T, 10 epochs
    python launch.py --config=experiments/stacked.py:deep   # 784-1000-500-250-30 (Hinton 2006)

Variants: `tied` (decoder kernels are the transposed encoder kernels; 10 epochs as in the
chapter), `deep` (784-1000-500-250-30), `runlocal`.

The model: docs/autoencoders.md. Measured: the README's experiments table (headline) and
docs/results.md (`tied`, `deep`).
"""

import ml_collections

from aevb.config import defaults
from experiments.autoencoder import autoencoder_defaults


def _tied(config: ml_collections.ConfigDict) -> None:
    config.model.tied_weights = True
    config.train.num_epochs = 10


def _deep(config: ml_collections.ConfigDict) -> None:
    config.model.hidden_sizes = (1000, 500, 250)
    config.train.batch_size = 100


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = autoencoder_defaults(defaults.base_config())
    config.experiment = "stacked"
    config.model.hidden_sizes = (100,)
    config.model.latent_dim = 30
    config.model.code_activation = "relu"
    return defaults.apply_variants(config, variant, "experiments/stacked.py",
                                  {"tied": _tied, "deep": _deep})
