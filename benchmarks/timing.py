"""Timing of compiled epochs, shared by the benchmarks (one convention: best of N after a
compilation epoch)."""

from __future__ import annotations

import time

import jax


def epoch_seconds(epoch_fn, state, images: jax.Array, impl: str, epochs: int):
    """(state, loss, best seconds of `epochs` epochs) after one compilation epoch."""
    state, metrics = epoch_fn(state, images, jax.random.key(0, impl=impl))
    jax.block_until_ready(metrics)
    seconds = []
    for e in range(1, epochs + 1):
        t0 = time.perf_counter()
        state, metrics = epoch_fn(state, images, jax.random.key(e, impl=impl))
        jax.block_until_ready(metrics)
        seconds.append(time.perf_counter() - t0)
    return state, float(metrics["loss"]), min(seconds)
