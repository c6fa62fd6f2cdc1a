"""What an encoder/decoder architecture supplies to the model families.

A family (`aevb/families/`) owns its objective and measurements; an architecture (`model.
architecture`) owns the layers: it builds the modules a family asks for, checks its own
fields against the image shape, exports the lower encoder layers for pretraining, and
counts its FLOPs. Every module maps flattened images x [..., D] (D = H * W * C), as the
data pipeline, the noise and the losses see them; a conv architecture reshapes inside.
A new architecture is one file in this package plus one line in its `__init__.py`.
"""

from __future__ import annotations

import abc
from typing import Any

import flax.linen as nn
import ml_collections

Params = Any
ImageShape = tuple[int, int, int]


class Architecture(abc.ABC):
    """The layers of one `model.architecture`."""

    name: str
    # Decoder kernels = the encoder's, transposed (`model.tied_weights`).
    supports_tied_weights: bool = False
    # Greedy layer-wise training (`train.schedule='layerwise'`).
    supports_layerwise: bool = False

    def check_fields(self, config: ml_collections.ConfigDict) -> None:
        """Checks this architecture's own fields, before any data; ConfigError."""

    def validate(self, config: ml_collections.ConfigDict, image_shape: ImageShape) -> None:
        """Checks this architecture's layers against the data's (H, W, C); ConfigError."""

    def has_dense_code(self, mc: ml_collections.ConfigDict) -> bool:
        """Whether the code comes out of a dense layer (a VAE's mean and log-variance must)."""
        return True

    @abc.abstractmethod
    def gaussian_encoder(self, mc: ml_collections.ConfigDict, image_shape: ImageShape
                         ) -> nn.Module:
        """The VAE's q(z|x): x [..., D] -> Gaussian [..., model.latent_dim]."""

    @abc.abstractmethod
    def posterior_mean(self, mc: ml_collections.ConfigDict, image_shape: ImageShape
                       ) -> nn.Module:
        """x [..., D] -> the mean of q(z|x) [..., L], with `gaussian_encoder`'s parameters."""

    @abc.abstractmethod
    def decoder(self, mc: ml_collections.ConfigDict, image_shape: ImageShape) -> nn.Module:
        """The VAE's p(x|z): z [..., L] -> Bernoulli or Gaussian [..., D] (`model.decoder`)."""

    @abc.abstractmethod
    def vae_features(self, mc: ml_collections.ConfigDict, image_shape: ImageShape,
                     encoder_params: Params | None, num_layers: int
                     ) -> tuple[nn.Module, Params | None]:
        """The lower `num_layers` layers of `gaussian_encoder` (below its mean and
        log-variance) as (module x [..., D] -> [..., F], their parameters taken from
        `encoder_params`, the encoder's own; None without them)."""

    @abc.abstractmethod
    def autoencoder(self, mc: ml_collections.ConfigDict, image_shape: ImageShape
                    ) -> nn.Module:
        """A deterministic autoencoder with the interface of `models.Autoencoder`:
        `encode`, `encode_with_preactivation`, `decode_logits`, `generate`, `__call__`
        (-> models.Reconstruction), `first_layer_kernel`, and `output_activation`."""

    @abc.abstractmethod
    def autoencoder_features(self, mc: ml_collections.ConfigDict, image_shape: ImageShape,
                             params: Params | None, num_layers: int
                             ) -> tuple[nn.Module, Params | None]:
        """The lower `num_layers` encoder layers of `autoencoder` (the code layer is the
        last) as (module, parameters taken from the autoencoder's `params`, or None)."""

    @abc.abstractmethod
    def encoder_depth(self, mc: ml_collections.ConfigDict) -> int:
        """How many encoder layers an autoencoder has (a VAE's: its hidden layers, plus
        the mean of q(z|x))."""

    @abc.abstractmethod
    def vae_forward_flops(self, mc: ml_collections.ConfigDict, image_shape: ImageShape
                          ) -> tuple[list[float], list[float]]:
        """Forward FLOPs of one example through each convolution or matmul of the VAE's
        (encoder, decoder), input side first (a multiply-add counts 2; see
        `benchmarks/flops.py`)."""

    @abc.abstractmethod
    def filter_tiles(self, kernel: Any, image_shape: ImageShape) -> Any:
        """The first layer's `kernel` (from `first_layer_kernel`) as images [N, h, w, C]
        in [0, 1], each rescaled on its own."""
