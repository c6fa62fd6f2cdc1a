"""What an architecture (`model.architecture`) supplies: family-neutral trunks.

An architecture owns layers and nothing that belongs to a model family: an encoder trunk
(x [..., D] -> features), a decoder trunk (code -> outputs per pixel, for a given number of
them), how many layers a trunk has, their FLOPs, the pictures of the first layer's filters,
and the checks of its own fields. A family (`aevb/families/`) puts its heads on the trunks
(`models.TrunkHead`): the VAE's Gaussian posterior and pixel distribution, the classifier's
softmax, M2's three networks; the autoencoder's code layer is its encoder trunk's top layer.
Every trunk maps flattened images x [..., D] (D = H * W * C), as the data pipeline, the
noise and the losses see them; a conv architecture reshapes inside. `mc` is the `model`
config section, read for the architecture's own fields only (`model.conv.*`): the widths,
activations and initialisers are the caller's. A new architecture is one file in this
package plus one line in its `__init__.py` (docs/extending.md).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import ml_collections

Params = Any
ImageShape = tuple[int, int, int]


class Architecture(abc.ABC):
    """The layers of one `model.architecture`."""

    name: str
    # Its layers are dense layers of `model.hidden_sizes` and nothing else: the autoencoder
    # family then builds the stacked autoencoder (`models.Autoencoder`, flat parameters),
    # the layout that tied weights and greedy layer-wise training work on.
    dense_stack: bool = False
    # Decoder kernels = the encoder's, transposed (`model.tied_weights`).
    supports_tied_weights: bool = False
    # Greedy layer-wise training (`train.schedule='layerwise'`).
    supports_layerwise: bool = False

    def check_fields(self, config: ml_collections.ConfigDict) -> None:
        """Checks this architecture's own fields, before any data; ConfigError."""

    def validate(self, config: ml_collections.ConfigDict, image_shape: ImageShape) -> None:
        """Checks this architecture's layers against the data's (H, W, C); ConfigError."""

    def has_dense_code(self, mc: ml_collections.ConfigDict) -> bool:
        """Whether a code comes out of a dense layer the caller adds (else it is the top of
        the architecture's own layers, `model.conv.code='feature_map'`)."""
        return True

    @abc.abstractmethod
    def encoder_trunk(self, mc: ml_collections.ConfigDict, image_shape: ImageShape,
                      widths: Sequence[int], activation: str, *,
                      top_activation: str | None = None, kernel_init: str = "lecun_normal",
                      num_layers: int = 0, preactivation: bool = False) -> nn.Module:
        """x [..., D] -> features [..., F]: the architecture's own layers, then dense layers
        of `widths`, each layer followed by `activation` (the whole trunk's top layer by
        `top_activation`, if given); only the lower `num_layers` (0: all). With
        `preactivation` the module returns (features, their pre-activation). The module is
        named after its parameters' scope, which a `models.TrunkHead` keeps."""

    @abc.abstractmethod
    def decoder_trunk(self, mc: ml_collections.ConfigDict, image_shape: ImageShape,
                      widths: Sequence[int], activation: str, channels: int = 1, *,
                      kernel_init: str = "lecun_normal", output_name: str = "output",
                      dense_input: bool = True) -> nn.Module:
        """z [..., J] -> `channels` outputs per pixel, a tuple of `channels` arrays [..., D]
        with no activation: dense layers of `widths` (each followed by `activation`), then
        the architecture's own layers up to the image. `output_name` names a dense output
        layer; `dense_input=False`: z is the top of an encoder trunk without a dense code
        (`has_dense_code`), which the decoder mirrors directly."""

    @abc.abstractmethod
    def trunk_depth(self, mc: ml_collections.ConfigDict, widths: Sequence[int]) -> int:
        """How many layers `encoder_trunk` with dense `widths` has (its `num_layers` range)."""

    @abc.abstractmethod
    def encoder_flops(self, mc: ml_collections.ConfigDict, image_shape: ImageShape,
                      widths: Sequence[int]) -> tuple[list[float], int]:
        """(forward FLOPs of one example through each convolution or matmul of
        `encoder_trunk` with dense `widths`, input side first; its output width F). A
        multiply-add counts 2 (see `benchmarks/flops.py`)."""

    @abc.abstractmethod
    def decoder_flops(self, mc: ml_collections.ConfigDict, image_shape: ImageShape,
                      input_width: int, widths: Sequence[int], channels: int = 1,
                      dense_input: bool = True) -> list[float]:
        """Forward FLOPs of one example through each layer of `decoder_trunk` (its
        arguments) from codes of `input_width`, input side first."""

    @abc.abstractmethod
    def filter_tiles(self, kernel: Any, image_shape: ImageShape) -> Any:
        """The first layer's `kernel` (a model's `first_layer_kernel`) as images
        [N, h, w, C] in [0, 1], each rescaled on its own."""
