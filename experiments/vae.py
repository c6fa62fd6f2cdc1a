"""The variational autoencoder of Kingma & Welling (2014) on dynamically binarized Fashion-MNIST.

Default: the paper's MNIST architecture (784-500-20, one hidden layer of 500 tanh units in
encoder and decoder, Bernoulli decoder, batch 100), trained with Adam for 30 epochs.

    python launch.py --config=experiments/vae.py
    python launch.py --config=experiments/vae.py:paper     # Adagrad as in the paper, 50 epochs
    python launch.py --config=experiments/vae.py --config.model.latent_dim=2  # + manifold.png

Variants (after the colon, comma-separated): `paper` (Adagrad, lr 0.02, 50 epochs),
`runlocal` (a few epochs and a small IWAE, for a quick check).

Measured results: see README.md ("Results"), produced by the commands above.
"""

import ml_collections

from aevb import configs


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = configs.base_config()
    config.experiment = "vae"
    for name in filter(None, variant.split(",")):
        if name == "paper":
            config.train.optimizer = "adagrad"
            config.train.learning_rate = 0.02
            config.train.num_epochs = 50
            config.eval.every_epochs = 10
        elif name == "runlocal":
            config.train.num_epochs = 2
            config.eval.every_epochs = 1
            config.eval.iwae_k = 100
            config.eval.iwae_num_examples = 500
        else:
            raise configs.ConfigError(
                f"unknown variant {name!r} of experiments/vae.py; allowed: paper, runlocal")
    return config
