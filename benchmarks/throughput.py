"""Training throughput against this machine's matrix-multiply rate (a benchmark, not a test).

    python benchmarks/throughput.py --config=experiments/vae.py [--config.a.b=value ...]

Trains the experiment's model on its real training set for --epochs epochs after one
compilation epoch, in the compiled on-device epoch loop that `launch.py` uses, and measures
in the same process the f32 rate of a large square GEMM (jitted, best of several). Prints
`examples_per_s=<float>` and, last, `matmul_fraction=<float>`: the model's FLOPs per second
(forward + backward, counted from the dense layer sizes) divided by the GEMM rate. For
scale it also prints the rate of the model's matmuls alone at the training batch size
(no elementwise work, RNG or optimizer), the most any training step could reach.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/

import time

import jax
import jax.numpy as jnp
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import configs, families, keys
from aevb import data as data_lib
from aevb.epoch import TrainState, make_optimizer, make_train_epoch
from benchmarks.flops import train_flops_per_example

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/vae.py", lock_config=True)
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs after the compilation epoch.")
_GEMM_SIZE = flags.DEFINE_integer("gemm_size", 2048, "Side of the square GEMM.")


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


def matmul_only_flops_per_s(layers: list[tuple[int, int]], batch: int, steps: int = 300) -> float:
    """Rate of the model's own matmuls alone (forward, weight and input gradients).

    The same [batch, fan_in] x [fan_in, fan_out] shapes as a training step, with none of the
    elementwise work, RNG or optimizer: the most a training step of this batch size could
    reach, for comparison with the big square GEMM.
    """
    keys = jax.random.split(jax.random.key(2), len(layers) + 1)
    kernels = [jax.random.normal(k, shape, jnp.float32) / 30 for k, shape in zip(keys, layers)]
    xs = jax.random.normal(keys[-1], (steps, batch, max(i for i, _ in layers)), jnp.float32)

    @jax.jit
    def run(xs, kernels):
        def body(acc, x):
            for k, w in enumerate(kernels):
                fan_in, fan_out = w.shape
                a = x[:, :fan_in]
                y = a @ w                                   # forward
                acc = acc + jnp.sum(a.T @ y[:, :fan_out])   # weight gradient
                if k:
                    acc = acc + jnp.sum(y @ w.T)            # input gradient
            return acc, None
        return jax.lax.scan(body, jnp.zeros(()), xs)[0]

    jax.block_until_ready(run(xs, kernels))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(run(xs, kernels))
        best = min(best, time.perf_counter() - t0)
    return batch * train_flops_per_example(layers) * steps / best


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    configs.validate(config)
    datasets = data_lib.load(config.data)
    d = datasets.num_pixels
    family = families.get(config.model.kind)
    model = family.make_model(config.model, d)
    tx = make_optimizer(config.train)
    state = TrainState.create(
        family.init_params(model, keys.run_keys(config.train.seed).init, d), tx)
    epoch_fn = make_train_epoch(family.objective(config, model, train=True), tx,
                                config.train.batch_size, config.data.binarize)
    images = jnp.asarray(datasets.train.images.reshape(-1, d))
    examples = images.shape[0] // config.train.batch_size * config.train.batch_size

    t0 = time.perf_counter()
    state, metrics = epoch_fn(state, images, jax.random.key(0))
    jax.block_until_ready(metrics)
    print(f"compile + first epoch: {time.perf_counter() - t0:.2f} s")
    seconds = []
    for e in range(1, _EPOCHS.value + 1):
        t0 = time.perf_counter()
        state, metrics = epoch_fn(state, images, jax.random.key(e))
        jax.block_until_ready(metrics)
        seconds.append(time.perf_counter() - t0)
        print(f"epoch {e}: {seconds[-1]:.3f} s, loss {float(metrics['loss']):.2f}")
    rate = examples * len(seconds) / sum(seconds)
    layers = model.dense_shapes()
    flops = train_flops_per_example(layers)
    gemm = gemm_flops_per_s(_GEMM_SIZE.value)
    ceiling = matmul_only_flops_per_s(layers, config.train.batch_size)
    print(f"device={jax.devices()[0].device_kind} batch={config.train.batch_size} "
          f"matmuls: {' '.join(f'{i}x{o}' for i, o in layers)}")
    print(f"model_flops_per_example={flops:.4g}")
    print(f"model_gflops_per_s={rate * flops / 1e9:.2f}")
    print(f"gemm{_GEMM_SIZE.value}_gflops_per_s={gemm / 1e9:.2f}")
    print(f"matmul_only_gflops_per_s={ceiling / 1e9:.2f}  (the same matmul shapes alone: "
          f"ceiling fraction {ceiling / gemm:.3f})")
    print(f"examples_per_s={rate:.1f}")
    print(f"matmul_fraction={rate * flops / gemm:.3f}")


if __name__ == "__main__":
    app.run(main)
