"""Joint training: the configured model trained end to end, evaluated, summarised.

The shape of a run (`train_and_evaluate`), the same in every regime:
  validate config -> load data -> check config against data -> (only now) write to workdir
  -> restore the last checkpoint if there is one -> epochs (`aevb/loop.py`) -> final
  measurements -> pictures and summary.
The model's family (`aevb/families/`) supplies the objective, the evaluation, the final
measurements and the pictures; `aevb/epoch.py` the compiled epoch; `aevb/keys.py` the keys.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import ml_collections

from aevb import families
from aevb.evaluation.measures import evaluate_splits
from aevb.regimes.prepare import eval_data, flat_images, load_and_check
from aevb.run import parallel
from aevb.run.workdir import claim
from aevb.training import keys, loop, schedules
from aevb.training.epoch import make_train_epoch
from aevb.training.train_state import TrainState, make_optimizer, num_parameters


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the configured model, evaluates it, and leaves the run's files in `workdir`.

    Returns the summary (also written to `<workdir>/summary.json`). Raises ConfigError or
    data.DataError before writing anything when the config or the data is unusable.
    """
    datasets = load_and_check(config)
    claim(config, workdir)
    mesh = parallel.make_mesh()
    family = families.get(config.model.kind)
    model = family.make_model(config.model, datasets.image_shape)
    steps_per_epoch = datasets.train.images.shape[0] // config.train.batch_size
    tx_steps = config.train.num_epochs * steps_per_epoch
    tx = make_optimizer(config.train, tx_steps)
    run_keys = keys.run_keys(config.train.seed, config.train.prng_impl)
    state = parallel.replicate(
        TrainState.create(family.init_params(model, run_keys.init, datasets.image_shape), tx),
        mesh)
    checkpoints = os.path.join(workdir, "checkpoints")
    run = loop.Run([workdir])

    images = parallel.replicate(flat_images(datasets.train), mesh)
    data = eval_data(config, datasets, mesh)
    train_epoch = make_train_epoch(
        family.objective(config, model, train=True, steps_per_epoch=steps_per_epoch), tx,
        config.train.batch_size, config.data.binarize, mesh)
    eval_terms = functools.partial(family.eval_terms, config, model)
    phase = loop.Phase(
        state=state, num_rounds=config.train.num_epochs,
        run=lambda s, e: train_epoch(s, images, jax.random.fold_in(run_keys.train, e)),
        evaluate=lambda params, e: evaluate_splits(
            eval_terms, params, data.splits, jax.random.fold_in(run_keys.eval, e), mesh),
        checkpoint_dir=checkpoints, **loop.epoch_cadence(config),
        examples_per_round=steps_per_epoch * config.train.batch_size,
        headline=family.headline)
    num_params = num_parameters(state.params)
    run.log(f"{config.experiment}: {datasets.name} ({images.shape[0]} train, "
            f"{datasets.test.images.shape[0]} test), {num_params:,} parameters, "
            f"{config.train.num_epochs} epochs of {steps_per_epoch} steps, learning rate "
            f"{config.train.learning_rate:g} "
            f"{schedules.describe(config.train.lr_schedule, tx_steps, steps_per_epoch)}"
            f"{parallel.describe_devices()}")
    result = run.train(phase)

    t0 = time.perf_counter()
    params = result.state.params
    with run.timed("evaluation"):
        final = family.final_metrics(config, model, params, data, run_keys.final, mesh)
    step = int(parallel.fetch(result.state.step))
    summary: dict[str, Any] = {
        "experiment": config.experiment, "dataset": datasets.name,
        "epochs": config.train.num_epochs, "steps": step, "num_params": num_params,
        **result.train[0], **result.eval[0], **final,
        "final_eval_seconds": time.perf_counter() - t0, "train_seconds": result.seconds,
        "examples_per_s": result.examples_per_s}
    draw = lambda: family.pictures(config, model, parallel.fetch(params),
                                   parallel.fetch(data.splits["test"]), data.image_shape,
                                   run_keys.pictures, workdir)
    run.finish([summary], [{**final, "train_seconds": result.seconds}],
               config.train.num_epochs, step, pictures=[draw])
    return summary
