"""A softmax classifier on any encoder: pretraining's and the semi-supervised baselines'.
"""

from __future__ import annotations

import flax.linen as nn
import jax


class Classifier(nn.Module):
    """Any encoder module under a softmax head: x [..., D] -> class logits [..., C].

    Parameters: `encoder` (the encoder's own, so a pretrained one drops in whole) and
    `head` (a dense layer).
    """

    encoder: nn.Module
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, name="head")(self.encoder(x))
