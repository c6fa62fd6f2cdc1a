"""Models: Flax modules and the math that scores them. Modules return distribution
parameters or activations, never losses; they read no config.

  layers.py        activations, initialisers, the dense stack, the pixel distribution
  vae.py           the VAE (Kingma & Welling 2014): Gaussian encoder, decoder
  autoencoder.py   undercomplete and stacked autoencoders, tied weights
  conv.py          convolutional encoders, decoders and autoencoder (conv_ops.py: gradients)
  m2.py            M2, the semi-supervised VAE of Kingma et al. (2014), and its objective
  classifier.py    a softmax head on any encoder
  distributions.py Bernoulli and Gaussian, with log-densities and samples
  losses.py        per-example likelihoods, KL terms, MSE
  iwae.py          the importance-weighted bound L_k (Burda et al. 2015)
  sparsity.py      the sparse autoencoder's penalties (KL to a target activation, L1)
"""

from aevb.models.autoencoder import Autoencoder, DenseEncoder, Reconstruction, dense_forward
from aevb.models.classifier import Classifier
from aevb.models.distributions import Bernoulli, Gaussian
from aevb.models.layers import (
                                ACTIVATIONS,
                                CODE_ACTIVATIONS,
                                DECODERS,
                                KERNEL_INITS,
                                MIN_LOG_VAR,
                                MLP,
                                OUTPUT_ACTIVATIONS,
                                get_activation,
                                pixel_distribution,
)
from aevb.models.vae import VAE, Decoder, GaussianEncoder, PosteriorMean, VAEOutput, dense_vae

__all__ = ["ACTIVATIONS", "CODE_ACTIVATIONS", "DECODERS", "KERNEL_INITS", "MIN_LOG_VAR", "MLP",
           "OUTPUT_ACTIVATIONS", "VAE", "Autoencoder", "Bernoulli", "Classifier", "Decoder", "DenseEncoder", "Gaussian",
           "GaussianEncoder", "PosteriorMean", "Reconstruction", "VAEOutput", "dense_forward",
           "dense_vae", "get_activation", "pixel_distribution"]
