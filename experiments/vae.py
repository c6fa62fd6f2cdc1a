"""The variational autoencoder of Kingma & Welling (2014) on dynamically binarized Fashion-MNIST.

Default: the paper's MNIST architecture (784-500-20: one hidden layer of 500 tanh units in
encoder and decoder, Bernoulli decoder, batch 100), trained with Adam for 30 epochs.

    python launch.py --config=experiments/vae.py
    python launch.py --config=experiments/vae.py:paper     # Adagrad as in the paper, 50 epochs
    python launch.py --config=experiments/vae.py:gaussian  # dequantized grey levels
    python launch.py --config=experiments/vae.py:conv      # convolutional encoder, decoder
    python launch.py --config=experiments/vae.py --config.model.latent_dim=2  # + manifold
    python launch.py --config=experiments/vae.py --sweep --workdir=runs/vae-latents

Variants (after the colon, comma-separated): `paper` (Adagrad, lr 0.02, 50 epochs),
`gaussian` (a Gaussian decoder on dequantized grey levels, nats and bits per dimension),
`conv` (a conv encoder 28 -> 14 -> 7 and its transposed-conv mirror,
aevb/architectures/conv.py; composes with the others, e.g. `conv,gaussian`),
`runlocal` (2 epochs, small IWAE: a quick check).

The model and its objectives: docs/vae.md. Measured: the README's headline table,
docs/results.md (`paper`, `gaussian`, the 2-D latent manifold), docs/sweeps.md (the
latent-size sweep) and docs/conv.md (`conv`).
"""

import ml_collections

from aevb import sweeps
from aevb.config import defaults


def _paper(config: ml_collections.ConfigDict) -> None:
    config.train.optimizer = "adagrad"
    config.train.learning_rate = 0.02
    config.train.num_epochs = 50
    config.eval.every_epochs = 10


def _gaussian(config: ml_collections.ConfigDict) -> None:
    config.model.decoder = "gaussian"
    config.data.binarize = "dequantize"


def conv_vae(config: ml_collections.ConfigDict) -> None:
    """Two stride-2 3x3 `same` convolutions of 32 and 64 filters (28 -> 14 -> 7), ReLU, a
    dense layer to the mean and log-variance; the decoder mirrors them (7 -> 14 -> 28).
    The `conv` variant here and of experiments/semisupervised.py (its M1)."""
    config.model.architecture = "conv"
    config.model.activation = "relu"
    config.model.hidden_sizes = ()
    config.model.conv.channels = (32, 64)
    config.model.conv.kernels = (3, 3)
    config.model.conv.strides = (2, 2)
    config.model.conv.pools = (1, 1)
    config.model.conv.paddings = ("same", "same")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.experiment = "vae"
    return defaults.apply_variants(config, variant, "experiments/vae.py",
                                  {"paper": _paper, "gaussian": _gaussian,
                                   "conv": conv_vae})


def get_sweep(name: str = "") -> list[dict]:
    """The default sweep (`--sweep`): latent sizes, as in the paper's figure 2 (2, 5, 10, 20
    and 200 latent variables)."""
    return sweeps.named(name, {"": lambda: sweeps.product(
        {"model.latent_dim": [2, 5, 10, 20, 200]})}, "experiments/vae.py")
