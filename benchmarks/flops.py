"""FLOP counts of a training step, shared by the benchmarks (one counter, one convention).

Every count is 2 FLOPs per multiply-add. A layer's forward FLOPs come from its model's family
(`Family.forward_flops`, from its architecture's `encoder_flops` and `decoder_flops`: dense
layers 2 x fan_in x fan_out, convolutions 2 x pixels x k^2 x C_in x C_out); the backward
pass is counted from them here. `step_matmuls` lists a dense VAE's matmuls of one step with
their rows, for timing them alone at the same shapes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import ml_collections
import numpy as np

from aevb import models


def train_flops(forward: Sequence[float], first_is_input: bool = True) -> float:
    """Forward + backward FLOPs of one example through layers with these forward FLOPs.

    Backward: the weight gradient costs the forward's FLOPs again, and the input gradient
    too, except for the first layer when it is fed by the data (`first_is_input`), whose
    input gradient is never needed.
    """
    return sum(f * (2 if k == 0 and first_is_input else 3) for k, f in enumerate(forward))


def step_flops(shapes: Sequence[tuple[int, int, int, bool]]) -> float:
    """Forward + backward FLOPs of a step's matmuls (rows, fan_in, fan_out, input_gradient):
    the forward and the weight gradient each, and the input gradient where needed."""
    return sum(2.0 * r * i * o * (3 if g else 2) for r, i, o, g in shapes)


def train_flops_per_example(layers: list[tuple[int, int]]) -> float:
    """`train_flops` of dense layers [(fan_in, fan_out)]."""
    return train_flops(forward_flops(layers))


def forward_flops(layers: list[tuple[int, int]]) -> list[float]:
    """Forward FLOPs of one example per dense layer [(fan_in, fan_out)]."""
    return [2.0 * i * o for i, o in layers]


def forward_flops_per_example(layers: list[tuple[int, int]]) -> float:
    """Forward-only matmul FLOPs of one example (e.g. computing codes of frozen layers)."""
    return sum(forward_flops(layers))


def step_matmuls(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]
                 ) -> list[tuple[int, int, int, bool]]:
    """The matmuls of one training step of the VAE on dense trunks (`model.architecture=
    'mlp'`) as (rows, fan_in, fan_out, input_gradient), for the throughput benchmark.

    The encoder over the batch B (D -> hidden -> 2L; its first layer, fed by the data, needs
    no input gradient), the decoder over the k x B codes (L -> reversed hidden -> D, 2D for
    a Gaussian decoder), a gated layer as its one kernel of twice its width. Under the
    VampPrior, the encoder again over the K learned pseudo-inputs (every input gradient)
    and log p(z)'s two [kB, L] x [L, K] matmuls."""
    mc, batch = config.model, config.train.batch_size
    codes = batch * config.train.num_samples
    gates = 2 if mc.activation == models.GATED else 1
    channels, _ = models.PIXEL_OUTPUTS[mc.decoder]

    def layers(widths: tuple[int, ...], rows: int, first_gradient: bool) -> list:
        last = len(widths) - 2
        return [(rows, i, o * (gates if k < last else 1), k > 0 or first_gradient)
                for k, (i, o) in enumerate(itertools.pairwise(widths))]

    encoder = (int(np.prod(image_shape)), *mc.hidden_sizes, 2 * mc.latent_dim)
    decoder = (mc.latent_dim, *reversed(mc.hidden_sizes), channels * encoder[0])
    shapes = layers(encoder, batch, False) + layers(decoder, codes, True)
    if mc.prior == "vampprior":
        shapes += layers(encoder, mc.num_pseudo_inputs, True)
        shapes += 2 * [(codes, mc.latent_dim, mc.num_pseudo_inputs, True)]
    return shapes
