"""Greedy layer-wise against end-to-end training of a deep stack (a report, not a test).

    python benchmarks/layerwise.py                                   # 784-1000-500-250-30
    python benchmarks/layerwise.py --config=experiments/layerwise.py:tied --joint_epochs=10

Both schedules train the configured stack (experiments/layerwise.py: 784-1000-500-250-30,
ReLU, MSE, Adam, batch 100) on all 60,000 training images from the same initial
parameters. End to end: --joint_epochs epochs of the joint run's compiled epoch.
Layer-wise: `train.num_epochs` epochs per phase (aevb/layerwise.py), then
`train.finetune_epochs` epochs end to end. The clock counts training only (compilation,
the phases' code computation and every epoch included); the test MSE measured after each
epoch (and of the assembled stack) is kept off it. Prints one line per measurement, then
a table: the training seconds at which each schedule first reached each target test MSE
(per pixel, on the 10,000 test images), and its final test MSE. Next to the seconds, the
work done by then in end-to-end epochs ("ep"), counted from the matmul FLOPs (phase k's
epoch costs its two layers' share of the stack's; computing its input codes costs one
forward pass through the layers below), which a machine shared with other jobs cannot skew.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import data as data_lib
from aevb import families
from aevb.data.pixels import preprocess
from aevb.families import autoencoder as ae
from aevb.regimes import layerwise
from aevb.regimes.validation import validate
from aevb.training import keys
from aevb.training.epoch import make_train_epoch
from aevb.training.train_state import TrainState, make_optimizer

# Experiment files import their siblings (`from experiments import stacked`).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.flops import forward_flops_per_example, train_flops_per_example  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/layerwise.py",
                                          lock_config=True)
_JOINT_EPOCHS = flags.DEFINE_integer("joint_epochs", 20, "End-to-end epochs.")
_TARGETS = flags.DEFINE_list("targets", ["0.02", "0.015", "0.012", "0.011", "0.01"],
                             "Test MSE levels whose time to reach is reported.")

# (what, training seconds so far, work so far in end-to-end epochs, test MSE)
Curve = list[tuple[str, float, float, float]]


def run_joint(config, stack, params, images, test_mse, num_epochs: int,
              name: str = "end-to-end", start: tuple[float, float] = (0.0, 0.0)) -> Curve:
    """End-to-end training: the joint run's compiled epoch, timed per epoch (the clock and
    the work count starting at `start`)."""
    tx = make_optimizer(config.train)
    state = TrainState.create(params, tx)
    objective = families.get(config.model.kind).objective(config, stack, train=True)
    epoch_fn = make_train_epoch(objective, tx, config.train.batch_size, config.data.binarize)
    key = jax.random.key(config.train.seed)
    (seconds, work), curve = start, []
    for epoch in range(1, num_epochs + 1):
        t0 = time.perf_counter()
        state, metrics = epoch_fn(state, images, jax.random.fold_in(key, epoch))
        jax.block_until_ready((state, metrics))
        seconds, work = seconds + time.perf_counter() - t0, work + 1.0
        curve.append((f"epoch {epoch}", seconds, work, test_mse(state.params)))
        print(f"{name:<11} {curve[-1][0]:>12}  {seconds:7.1f} s  {work:5.2f} ep  "
              f"test mse {curve[-1][3]:.5f}", flush=True)
    return curve


def run_layerwise(config, stack, params, images, test_mse) -> Curve:
    """The phases one after another (each timed whole), then the fine-tuning epochs."""
    key = jax.random.key(config.train.seed)
    num_pixels = images.shape[-1]
    stack_flops = train_flops_per_example(stack.dense_shapes())
    tx = make_optimizer(config.train)
    seconds, work, curve = 0.0, 0.0, []
    for k in range(len(ae.stack_widths(config.model, num_pixels)) - 1):
        t0 = time.perf_counter()
        _, state, run_epoch = layerwise.layer_trainer(config, k, params, images,
                                                      jax.random.fold_in(key, k), tx)
        for epoch in range(1, config.train.num_epochs + 1):
            state, _ = run_epoch(state, epoch)
        params = ae.with_layer(params, k, state.params)
        jax.block_until_ready(state)
        seconds += time.perf_counter() - t0
        phase = ae.layer_model(config.model, num_pixels, k).dense_shapes()
        below = [ae.layer_model(config.model, num_pixels, i).dense_shapes()[0]
                 for i in range(k)]
        work += (config.train.num_epochs * train_flops_per_example(phase)
                 + forward_flops_per_example(below)) / stack_flops
        print(f"layer-wise  {'phase ' + str(k + 1):>12}  {seconds:7.1f} s  {work:5.2f} ep",
              flush=True)
    curve.append(("assembled", seconds, work, test_mse(params)))
    print(f"layer-wise  {'assembled':>12}  {seconds:7.1f} s  {work:5.2f} ep  "
          f"test mse {curve[-1][3]:.5f}", flush=True)
    finetune = run_joint(config, stack, params, images, test_mse, config.train.finetune_epochs,
                         name="fine-tuning", start=(seconds, work))
    return curve + [(f"fine-tuning {what}", *rest) for what, *rest in finetune]


def first_reach(curve: Curve, target: float) -> str:
    """'<seconds> s, <work> ep' of the first measurement at or below the target MSE."""
    for _, seconds, work, mse in curve:
        if mse <= target:
            return f"{seconds:.0f} s, {work:.1f} ep"
    return "not reached"


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    config.data.num_validation = 0          # both schedules train on every training image
    validate(config)
    datasets = data_lib.load(config.data)
    num_pixels = datasets.num_pixels
    images = jnp.asarray(datasets.train.images.reshape(-1, num_pixels))
    test_x = preprocess(jnp.asarray(datasets.test.images.reshape(-1, num_pixels)),
                        config.data.binarize, keys.data_keys(config.data.seed).test)
    family = families.get(config.model.kind)
    stack = family.make_model(config.model, datasets.image_shape)

    def test_mse(params) -> float:
        terms = ae.reconstruction_terms(stack, params, test_x, jax.random.key(0),
                                        config.eval.batch_size)
        return float(jnp.mean(terms["mse"]))

    widths = "-".join(map(str, ae.stack_widths(config.model, num_pixels)))
    print(f"stack {widths}, {images.shape[0]} training images, batch "
          f"{config.train.batch_size}, {config.train.optimizer} {config.train.learning_rate:g}, "
          f"noise {config.noise.kind}, sparsity {config.sparsity.kind}, "
          f"tied {config.model.tied_weights}; device {jax.devices()[0].device_kind}", flush=True)
    initial = family.init_params(stack, keys.run_keys(config.train.seed).init,
                                 datasets.image_shape)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    joint = run_joint(config, stack, copy(initial), images, test_mse, _JOINT_EPOCHS.value)
    greedy = run_layerwise(config, stack, copy(initial), images, test_mse)

    targets = [float(t) for t in _TARGETS.value]
    n = len(ae.stack_widths(config.model, num_pixels)) - 1
    phases = f"layer-wise, {n}x{config.train.num_epochs} epochs"
    rows = [(f"end-to-end, {_JOINT_EPOCHS.value} epochs", joint),
            (f"{phases}, assembled", greedy[:1]),
            (f"{phases} + {config.train.finetune_epochs} fine-tuning", greedy)]
    header = (f"| schedule | train s, ep | "
              f"{' | '.join(f'to MSE <= {t:g}' for t in targets)} | final test MSE |")
    print()
    print(header)
    print("|" + "---|" * (len(targets) + 3))
    for name, curve in rows:
        cells = " | ".join(first_reach(curve, t) for t in targets)
        print(f"| {name} | {curve[-1][1]:.0f} s, {curve[-1][2]:.1f} ep | {cells} "
              f"| {curve[-1][3]:.5f} |")


if __name__ == "__main__":
    app.run(main)
