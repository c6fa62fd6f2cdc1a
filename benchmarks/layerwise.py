"""Greedy layer-wise against end-to-end training of a deep stack (a report, not a test).

    python -m benchmarks.layerwise                                   # 784-1000-500-250-30
    python -m benchmarks.layerwise --config=experiments/layerwise.py:tied --joint_epochs=10

Both schedules train the configured stack (experiments/layerwise.py: 784-1000-500-250-30,
ReLU, MSE, Adam, batch 100) on all 60,000 training images from the same initial
parameters, each as the run `launch.py` makes (`aevb.regimes.run`, in `--workdir`), with
the test set evaluated after every epoch. End to end: --joint_epochs epochs
(`train.schedule=joint`). Layer-wise: `train.num_epochs` epochs per phase
(aevb/regimes/layerwise.py), then `train.finetune_epochs` epochs end to end.

Reads each run's files: the stack's test MSE (per pixel, on the 10,000 test images) after
every end-to-end epoch from metrics.jsonl, the assembled stack's and the training seconds
from summary.json (each phase's, and the end-to-end epochs' as a whole: epochs, their
evaluations and checkpoints, compilation; within a stretch of equal epochs each epoch is
counted an equal share). Prints one line per measurement, then a table: the training
seconds at which each schedule first reached each target test MSE, and its final test MSE.
Next to the seconds, the work done by then in end-to-end epochs ("ep"), counted from the
matmul FLOPs (phase k's epoch costs its two layers' share of the stack's; computing its
input codes costs one forward pass through the layers below), which a machine shared with
other jobs cannot skew.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import families, regimes
from aevb.families import autoencoder as ae
from aevb.regimes.prepare import load_and_check
from aevb.run import files
from benchmarks.flops import forward_flops_per_example, train_flops_per_example

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/layerwise.py",
                                          lock_config=False)
_JOINT_EPOCHS = flags.DEFINE_integer("joint_epochs", 20, "End-to-end epochs.")
_TARGETS = flags.DEFINE_list("targets", ["0.02", "0.015", "0.012", "0.011", "0.01"],
                             "Test MSE levels whose time to reach is reported.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Where the two runs go (a rerun resumes "
                               "them); default: a temporary directory, removed after.")

# (what, training seconds so far, work so far in end-to-end epochs, test MSE)
Curve = list[tuple[str, float, float, float]]


def test_mse_per_epoch(workdir: str, phase: str = "") -> list[float]:
    """The test MSE of every evaluated epoch of a run's phase ('' for a joint run), in
    order, from its metrics.jsonl."""
    key = f"{phase}/test_mse" if phase else "test_mse"
    with open(files.path(workdir, files.METRICS)) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r[key] for r in records if key in r and not r.get("final")
            and r.get("phase", "") == phase]


def run_joint(config, workdir: str, num_epochs: int) -> Curve:
    """End-to-end training, `num_epochs` epochs, as `launch.py` runs it."""
    config = config.copy_and_resolve_references()
    config.train.schedule, config.train.finetune_epochs = "joint", 0
    config.train.num_epochs = num_epochs
    summary = regimes.run(config, workdir)
    share = summary["train_seconds"] / num_epochs
    return [(f"epoch {e}", e * share, float(e), mse)
            for e, mse in enumerate(test_mse_per_epoch(workdir), start=1)]


def run_layerwise(config, workdir: str, image_shape: tuple[int, int, int]) -> Curve:
    """The phases one after another, the assembled stack, then the fine-tuning epochs, as
    `launch.py` runs them; the work of each phase counted from its layers' FLOPs."""
    summary = regimes.run(config, workdir)
    num_pixels = image_shape[0] * image_shape[1] * image_shape[2]
    stack = families.get(config.model.kind).make_model(config.model, image_shape)
    stack_flops = train_flops_per_example(stack.dense_shapes())
    num_phases = len(ae.stack_widths(config.model, num_pixels)) - 1
    seconds, work, curve = 0.0, 0.0, []
    for k in range(num_phases):
        phase = ae.layer_model(config.model, num_pixels, k).dense_shapes()
        below = [ae.layer_model(config.model, num_pixels, i).dense_shapes()[0]
                 for i in range(k)]
        work += (config.train.num_epochs * train_flops_per_example(phase)
                 + forward_flops_per_example(below)) / stack_flops
        seconds += summary[f"phase_{k + 1}_seconds"]
        curve.append((f"phase {k + 1}", seconds, work, float("nan")))
    curve.append(("assembled", seconds, work, summary["assembled_test_mse"]))
    finetune = test_mse_per_epoch(workdir, "finetune")
    share = (summary["train_seconds"] - seconds) / max(len(finetune), 1)
    curve += [(f"fine-tuning epoch {f}", seconds + f * share, work + f, mse)
              for f, mse in enumerate(finetune, start=1)]
    return curve


def first_reach(curve: Curve, target: float) -> str:
    """'<seconds> s, <work> ep' of the first measurement at or below the target MSE."""
    for _, seconds, work, mse in curve:
        if mse <= target:
            return f"{seconds:.0f} s, {work:.1f} ep"
    return "not reached"


def print_curve(name: str, curve: Curve) -> None:
    for what, seconds, work, mse in curve:
        print(f"{name:<11} {what:>20}  {seconds:7.1f} s  {work:5.2f} ep"
              + ("" if math.isnan(mse) else f"  test mse {mse:.5f}"), flush=True)


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    config.data.num_validation = 0          # both schedules train on every training image
    config.eval.every_epochs = 1            # the test MSE after every epoch
    datasets = load_and_check(config)
    num_pixels = datasets.num_pixels
    widths = "-".join(map(str, ae.stack_widths(config.model, num_pixels)))
    print(f"stack {widths}, batch {config.train.batch_size}, {config.train.optimizer} "
          f"{config.train.learning_rate:g}, noise {config.noise.kind}, sparsity "
          f"{config.sparsity.kind}, tied {config.model.tied_weights}; device "
          f"{jax.devices()[0].device_kind}", flush=True)
    with tempfile.TemporaryDirectory(prefix="aevb-layerwise-") as tmp:
        root = _WORKDIR.value or tmp
        joint = run_joint(config, os.path.join(root, "end_to_end"), _JOINT_EPOCHS.value)
        greedy = run_layerwise(config, os.path.join(root, "layerwise"), datasets.image_shape)
    print()
    print_curve("end-to-end", joint)
    print_curve("layer-wise", greedy)

    targets = [float(t) for t in _TARGETS.value]
    n = len(ae.stack_widths(config.model, num_pixels)) - 1
    phases = f"layer-wise, {n}x{config.train.num_epochs} epochs"
    assembled = [c for c in greedy if c[0] == "assembled"]
    rows = [(f"end-to-end, {_JOINT_EPOCHS.value} epochs", joint),
            (f"{phases}, assembled", assembled),
            (f"{phases} + {config.train.finetune_epochs} fine-tuning", greedy)]
    print()
    print(f"| schedule | train s, ep | "
          f"{' | '.join(f'to MSE <= {t:g}' for t in targets)} | final test MSE |")
    print("|" + "---|" * (len(targets) + 3))
    for name, curve in rows:
        cells = " | ".join(first_reach(curve, t) for t in targets)
        print(f"| {name} | {curve[-1][1]:.0f} s, {curve[-1][2]:.1f} ep | {cells} "
              f"| {curve[-1][3]:.5f} |")


if __name__ == "__main__":
    app.run(main)
