"""FLOP counts of dense layers, shared by the benchmarks (one counter, one convention)."""

from __future__ import annotations


def train_flops_per_example(layers: list[tuple[int, int]]) -> float:
    """Forward + backward matmul FLOPs of one example through dense layers [(fan_in, fan_out)].

    Forward: 2 * fan_in * fan_out per layer. Backward: the weight gradient costs the same
    again, and the input gradient too, except for the first layer, fed by the data, whose
    input gradient is never needed.
    """
    return sum(2.0 * i * o * (2 if k == 0 else 3) for k, (i, o) in enumerate(layers))


def forward_flops_per_example(layers: list[tuple[int, int]]) -> float:
    """Forward-only matmul FLOPs of one example (e.g. computing codes of frozen layers)."""
    return sum(2.0 * i * o for i, o in layers)
