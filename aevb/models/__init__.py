"""Models: Flax modules and the math that scores them. Modules return distribution
parameters or activations, never losses; they read no config.

  layers.py        activations, initialisers, the dense trunks, the base of a head on a
                   trunk, the pixel distribution
  vae.py           the VAE (Kingma & Welling 2014): Gaussian posterior, pixel decoder
  autoencoder.py   undercomplete and stacked autoencoders, tied weights; one on any trunks
  conv.py          the convolutional trunks (conv_ops.py: their gradients)
  m2.py            M2, the semi-supervised VAE of Kingma et al. (2014), and its objective
  classifier.py    a softmax head on any encoder
  distributions.py Bernoulli, Gaussian and the priors, with log-densities and samples
  losses.py        per-example likelihoods, KL terms, MSE
  iwae.py          the importance-weighted bound L_k (Burda et al. 2015)
  sparsity.py      the sparse autoencoder's penalties (KL to a target activation, L1)
"""

from aevb.models.autoencoder import (
    Autoencoder,
    DenseEncoder,
    Reconstruction,
    TrunkAutoencoder,
    dense_forward,
)
from aevb.models.classifier import Classifier
from aevb.models.distributions import Bernoulli, Gaussian, GaussianMixture, StandardNormal
from aevb.models.layers import (
    ACTIVATIONS,
    CODE_ACTIVATIONS,
    DECODERS,
    GATED,
    KERNEL_INITS,
    MIN_LOG_VAR,
    MLP,
    OUTPUT_ACTIVATIONS,
    PIXEL_OUTPUTS,
    MLPDecoder,
    TrunkHead,
    broadcast_add,
    get_activation,
    lower_layer_params,
    pixel_distribution,
)
from aevb.models.vae import (
    PRIORS,
    VAE,
    GaussianEncoder,
    PixelDecoder,
    PosteriorMean,
    VAEOutput,
    dense_vae,
)

__all__ = [
    "ACTIVATIONS",
    "CODE_ACTIVATIONS",
    "DECODERS",
    "GATED",
    "KERNEL_INITS",
    "MIN_LOG_VAR",
    "MLP",
    "OUTPUT_ACTIVATIONS",
    "PIXEL_OUTPUTS",
    "PRIORS",
    "VAE",
    "Autoencoder",
    "Bernoulli",
    "Classifier",
    "DenseEncoder",
    "Gaussian",
    "GaussianEncoder",
    "GaussianMixture",
    "MLPDecoder",
    "PixelDecoder",
    "PosteriorMean",
    "Reconstruction",
    "StandardNormal",
    "TrunkAutoencoder",
    "TrunkHead",
    "VAEOutput",
    "broadcast_add",
    "dense_forward",
    "dense_vae",
    "get_activation",
    "lower_layer_params",
    "pixel_distribution",
]
