"""FLOP counts of a training step, shared by the benchmarks (one counter, one convention).

Every count is 2 FLOPs per multiply-add. A layer's forward FLOPs come from its model's family
(`Family.forward_flops`, from its architecture's `encoder_flops` and `decoder_flops`: dense
layers 2 x fan_in x fan_out, convolutions 2 x pixels x k^2 x C_in x C_out); the backward
pass is counted from them here.
"""

from __future__ import annotations

from collections.abc import Sequence


def train_flops(forward: Sequence[float], first_is_input: bool = True) -> float:
    """Forward + backward FLOPs of one example through layers with these forward FLOPs.

    Backward: the weight gradient costs the forward's FLOPs again, and the input gradient
    too, except for the first layer when it is fed by the data (`first_is_input`), whose
    input gradient is never needed.
    """
    return sum(f * (2 if k == 0 and first_is_input else 3) for k, f in enumerate(forward))


def train_flops_per_example(layers: list[tuple[int, int]]) -> float:
    """`train_flops` of dense layers [(fan_in, fan_out)]."""
    return train_flops(forward_flops(layers))


def forward_flops(layers: list[tuple[int, int]]) -> list[float]:
    """Forward FLOPs of one example per dense layer [(fan_in, fan_out)]."""
    return [2.0 * i * o for i, o in layers]


def forward_flops_per_example(layers: list[tuple[int, int]]) -> float:
    """Forward-only matmul FLOPs of one example (e.g. computing codes of frozen layers)."""
    return sum(forward_flops(layers))
