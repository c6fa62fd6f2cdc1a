"""Timing shared by the benchmarks (one convention: best of N after a compiling call): whole
epochs, and the ablations a step's breakdown is made of (its matmuls alone, its optimizer
alone, the loop's own per-step cost, a large GEMM for scale)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax


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


def gemm_flops_per_s(n: int, repeats: int = 10) -> float:
    """Best-of-`repeats` rate of a jitted f32 [n, n] @ [n, n] on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def best_seconds(fn, *args, repeats: int = 5) -> float:
    """Best wall time of `fn(*args)` (compiled by a first call), to the end of its outputs."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def loop_seconds_per_step(steps: int = 300) -> float:
    """A scan of `steps` trivial steps: the per-step cost of the loop itself, which every
    ablated measurement below also pays and from which it is subtracted."""
    def body(acc, x):
        return acc * 0.5 + x, None  # a dependence XLA cannot fold away

    run = jax.jit(lambda xs: jax.lax.scan(body, jnp.zeros(8), xs)[0])
    return best_seconds(run, jnp.ones((steps, 8), jnp.float32)) / steps


def optimizer_seconds_per_step(tx, params, steps: int = 300) -> float:
    """A jitted scan of `steps` optimizer updates of `params` (the step's optimizer alone)."""
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    @jax.jit
    def run(params, opt_state):
        def body(carry, _):
            params, opt_state = carry
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None
        return jax.lax.scan(body, (params, opt_state), None, length=steps)[0]

    return best_seconds(run, params, tx.init(params)) / steps


def matmul_only_seconds(shapes: list[tuple[int, int, int, bool]], steps: int = 300) -> float:
    """Seconds per step of matmuls alone, one per (rows, fan_in, fan_out, input_gradient):
    [rows, fan_in] x [fan_in, fan_out] forward, its weight gradient, and its input gradient
    where `input_gradient` (a layer fed by the data needs none), in a jitted scan of `steps`
    steps, the loop's own cost included (best of 5)."""
    keys = jax.random.split(jax.random.key(2), len(shapes) + 1)
    kernels = [jax.random.normal(k, (i, o), jnp.float32) / 30
               for k, (_, i, o, _) in zip(keys, shapes)]
    rows = max(r for r, *_ in shapes)
    xs = jax.random.normal(keys[-1], (steps, rows, max(i for _, i, _, _ in shapes)),
                           jnp.float32)
    spec = [(r, g) for r, _, _, g in shapes]

    @jax.jit
    def run(xs, kernels):
        def body(acc, x):
            for (r, input_gradient), w in zip(spec, kernels):
                fan_in, fan_out = w.shape
                a = x[:r, :fan_in]
                y = a @ w                                   # forward
                acc = acc + jnp.sum(a.T @ y[:, :fan_out])   # weight gradient
                if input_gradient:
                    acc = acc + jnp.sum(y @ w.T)            # input gradient
            return acc, None
        return jax.lax.scan(body, jnp.zeros(()), xs)[0]

    return best_seconds(run, xs, kernels) / steps
