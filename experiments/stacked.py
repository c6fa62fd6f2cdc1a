"""Stacked (deep) autoencoder on Fashion-MNIST grey levels: 784-100-30-100-784.

The stack of Géron's chapter: ReLU layers symmetric around a 30-unit code, MSE per pixel.

    python launch.py --config=experiments/stacked.py
    python launch.py --config=experiments/stacked.py:tied   # W' = W^T, 10 epochs
    python launch.py --config=experiments/stacked.py:deep   # 784-1000-500-250-30 (Hinton 2006)

Variants: `tied` (decoder kernels are the transposed encoder kernels; 10 epochs as in the
chapter), `deep` (784-1000-500-250-30 with a linear code and a cross-entropy output, as
Hinton & Salakhutdinov fine-tuned theirs; AdamW and a cosine rate over 100 epochs, on all
60,000 training images as theirs were),
`runlocal`.

The model: docs/autoencoders.md. Measured: the README's experiments table (headline) and
docs/results.md (`tied`, `deep`).
"""

import ml_collections

from aevb.config import defaults
from experiments.autoencoder import autoencoder_defaults


def _tied(config: ml_collections.ConfigDict) -> None:
    config.model.tied_weights = True
    config.train.num_epochs = 10


def deep_stack(config: ml_collections.ConfigDict) -> None:
    """The deep autoencoder's widths (Hinton & Salakhutdinov 2006): 784-1000-500-250-30."""
    config.model.hidden_sizes = (1000, 500, 250)
    config.train.batch_size = 100


def _deep(config: ml_collections.ConfigDict) -> None:
    """The deep stack trained end to end as Hinton & Salakhutdinov's fine-tuning was: linear
    code units, logistic outputs scored by cross-entropy; with AdamW (decay 0.05, applied
    times the rate) and a cosine-decayed rate over 100 epochs, on all 60,000 training images
    (no validation split: nothing is selected; docs/autoencoders.md)."""
    deep_stack(config)
    config.model.code_activation = "linear"
    config.model.reconstruction_loss = "cross_entropy"
    config.train.optimizer = "adamw"
    config.train.weight_decay = 0.05
    config.train.lr_schedule = "cosine"
    config.train.num_epochs = 100
    config.data.num_validation = 0      # all 60,000 training images, as theirs


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = autoencoder_defaults(defaults.base_config())
    config.experiment = "stacked"
    config.model.hidden_sizes = (100,)
    config.model.latent_dim = 30
    config.model.code_activation = "relu"
    return defaults.apply_variants(config, variant, "experiments/stacked.py",
                                  {"tied": _tied, "deep": _deep})
