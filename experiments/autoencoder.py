"""Undercomplete autoencoder on Fashion-MNIST grey levels: 784 -> 30 -> 784.

One dense layer into a linear 30-unit code and one back out through a sigmoid: the code is
smaller than the input, so the network must keep what matters most for reconstruction.
The summary's `pca_mse` is the error of PCA with the same code size, its linear optimum.

    python launch.py --config=experiments/autoencoder.py
    python launch.py --config=experiments/autoencoder.py --config.model.reconstruction_loss=cross_entropy
    python launch.py --config=experiments/autoencoder.py:linear    # linear AE: reaches PCA

Variants: `linear` (identity output, MSE: the PCA-equivalent autoencoder), `runlocal`.

The model: docs/autoencoders.md. Measured: the README's experiments table (headline) and
docs/results.md.
"""

import ml_collections

from aevb.config import defaults


def autoencoder_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """What every autoencoder experiment shares: grey levels, MSE, Adam, 20 epochs."""
    config.data.binarize = "none"
    config.data.num_validation = 5000      # as in the chapter: 55,000 train, 5,000 validation
    config.model.kind = "autoencoder"
    config.model.activation = "relu"
    config.model.code_activation = "linear"
    config.model.output_activation = "sigmoid"
    config.model.reconstruction_loss = "mse"
    config.train.num_epochs = 20
    config.train.batch_size = 32
    config.train.learning_rate = 1e-3
    config.eval.every_epochs = 5
    return config


def _linear(config: ml_collections.ConfigDict) -> None:
    config.model.output_activation = "linear"


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = autoencoder_defaults(defaults.base_config())
    config.experiment = "autoencoder"
    config.model.hidden_sizes = ()
    config.model.latent_dim = 30
    return defaults.apply_variants(config, variant, "experiments/autoencoder.py",
                                  {"linear": _linear})
