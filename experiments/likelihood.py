"""The log-likelihood protocol of Tomczak & Welling (2018), "VAE with a VampPrior", as
Norouzi, Fleet & Norouzi (2020), "Exemplar VAEs", Table 1, ran it on dynamic MNIST and
Fashion-MNIST: a VAE with a standard normal prior, selected and stopped on a validation split.

As in the authors' code (sajadn/Exemplar-VAE, after jmtomczak/vae_vampprior):
- 50,000 training and 10,000 validation images (`data.num_validation`), training batches
  binarized afresh (dynamic), the validation and test sets binarized once with fixed keys;
- two gated dense layers of 300 units each way, h = (W1 x + b1) * sigmoid(W2 x + b2)
  (`model.activation='gated'`), 40 latent units, a Bernoulli decoder, the encoder's
  log-variance clipped to [-6, 2] (`model.encoder_log_var_clip`);
- Adam with a rate of 5e-4 on gradients normalised to unit L2 norm per parameter tensor
  (their `AdamNormGrad`: `train.normalize_gradients`), batches of 100;
- the KL term's weight rising linearly from 0 over the first 100 epochs;
- up to 2,000 epochs, stopped after 50 epochs without a better validation bound, the
  parameters of the best one kept (`train.select_on='validation_neg_elbo'`,
  `train.patience=50`, an evaluation of the validation split every epoch);
- the test split read once, for the selected parameters (`eval.test_while_training=False`):
  its -ELBO and -log p(x) from 5,000 importance samples on the whole test set
  (`test_log_likelihood`).

How it differs: the authors initialise their layers with He's normal heuristic; here Flax's
default (variance 1/fan_in, `lecun_normal`). The warm-up rises per step within each epoch
(theirs per epoch).

Published, test -log p(x) in nats (Norouzi et al. 2020, Table 1, mean of their runs):
Fashion-MNIST 228.70 ± 0.15, dynamic MNIST 84.45; the VampPrior 227.35 ± 0.05 and 82.43. A run's `test_log_likelihood` of -228.7 reads as 228.7 nats.

    python launch.py --config=experiments/likelihood.py
    python launch.py --config=experiments/likelihood.py --config.data.dir=MNIST_DIR

Variants: `iwae` (the IWAE objective with k = 5, the same protocol, selected and stopped
on the validation -L_5, the bound it maximises), `vampprior` (the
VampPrior of Tomczak & Welling with K = 500 pseudo-inputs, `model.prior`: the KL term
estimated from the sample, as theirs; their pseudo-inputs start at N(0.05, 0.01^2) per
pixel, clipped to [0, 1]), `conv` (the default conv
encoder and decoder of `model.conv`, ReLU, no published target: the nearest, 225.38, has
two stochastic layers), `runlocal` (two epochs, small evaluations: a check that it runs).
"""

import ml_collections

from aevb.config import defaults


def _iwae(config: ml_collections.ConfigDict) -> None:
    config.train.objective = "iwae"
    config.train.num_samples = 5
    config.train.select_on = "validation_neg_iwae_bound"  # its own bound, -L_5


def _vampprior(config: ml_collections.ConfigDict) -> None:
    config.model.prior = "vampprior"
    config.model.num_pseudo_inputs = 500


def _conv(config: ml_collections.ConfigDict) -> None:
    config.model.architecture = "conv"
    config.model.hidden_sizes = ()
    config.model.activation = "relu"


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.experiment = "likelihood"
    config.data.binarize = "dynamic"
    config.data.num_validation = 10000
    config.model.kind = "vae"
    config.model.hidden_sizes = (300, 300)
    config.model.activation = "gated"
    config.model.latent_dim = 40
    config.model.decoder = "bernoulli"
    config.model.encoder_log_var_clip = (-6.0, 2.0)
    config.train.optimizer = "adam"
    config.train.learning_rate = 5e-4
    config.train.normalize_gradients = True
    config.train.batch_size = 100
    config.train.kl_warmup_epochs = 100
    config.train.num_epochs = 2000
    config.train.select_on = "validation_neg_elbo"
    config.train.select_mode = "min"
    config.train.patience = 50
    config.eval.every_epochs = 1
    config.eval.test_while_training = False
    config.eval.iwae_k = 5000
    config.eval.iwae_num_examples = -1
    return defaults.apply_variants(config, variant, "experiments/likelihood.py",
                                   {"iwae": _iwae, "vampprior": _vampprior,
                                    "conv": _conv})
