"""Joint training: the configured model trained end to end, evaluated, summarised.

The shape of a run (`train_and_evaluate`), the same in every regime:
  validate config -> load data -> check config against data -> (only now) write to workdir
  -> restore the last checkpoint if there is one -> epochs (`aevb/training/loop.py`) -> final
  measurements -> pictures and summary.
The model's family (`aevb/families/`) supplies the objective, the evaluation, the final
measurements and the pictures; `aevb/training/epoch.py` the compiled epoch;
`aevb/training/keys.py` the keys.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from aevb import data as data_lib
from aevb import families
from aevb.config.checks import ConfigError
from aevb.evaluation.measures import split_evaluations
from aevb.regimes.prepare import eval_data, load_and_check, train_rows
from aevb.regimes.probe import METRIC as PROBE
from aevb.regimes.probe import make_probe
from aevb.run import files, metrics, parallel
from aevb.run.workdir import claim, saved_config
from aevb.training import keys, loop, schedules, selection
from aevb.training.epoch import make_train_epoch
from aevb.training.train_state import TrainState, make_optimizer, num_parameters


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a joint run trains, built by `setup` (the run itself and the benchmarks).

    `train_epoch(state, images, key) -> (state, metrics)` is the compiled epoch (it donates
    `state`: pass a copy to keep one); `images` the training set as uint8 rows [N, D] on
    every device of the mesh; `state` the initial parameters (from `run_keys.init`) and
    optimizer state, replicated; `tx` the optimizer, its schedule `tx_steps` =
    `train.num_epochs` x `steps_per_epoch` steps long.
    """

    family: families.Family
    model: Any
    tx: optax.GradientTransformation
    run_keys: keys.RunKeys
    state: TrainState
    images: jax.Array
    train_epoch: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    steps_per_epoch: int
    tx_steps: int


def setup(config: ml_collections.ConfigDict, datasets: data_lib.Datasets, mesh: Mesh) -> Setup:
    """The family's model, optimizer, initial state and compiled epoch of a checked config
    and its data (`prepare.load_and_check`), on `mesh`; draws nothing but the parameters."""
    family = families.get(config.model.kind)
    model = family.make_model(config.model, datasets.image_shape)
    steps_per_epoch = datasets.num_train // config.train.batch_size
    tx_steps = config.train.num_epochs * steps_per_epoch
    tx = make_optimizer(config.train, tx_steps)
    run_keys = keys.run_keys(config.train.seed, config.train.prng_impl)
    state = parallel.replicate(
        TrainState.create(family.init_params(model, run_keys.init, datasets.image_shape), tx),
        mesh)
    images = train_rows(datasets, mesh)
    train_epoch = make_train_epoch(
        family.objective(config, model, train=True, steps_per_epoch=steps_per_epoch), tx,
        config.train.batch_size, config.data.binarize, mesh, num_examples=datasets.num_train)
    return Setup(family=family, model=model, tx=tx, run_keys=run_keys, state=state,
                 images=images, train_epoch=train_epoch, steps_per_epoch=steps_per_epoch,
                 tx_steps=tx_steps)


def select(config: ml_collections.ConfigDict) -> loop.Select | None:
    """`train.select_on`, `train.select_mode`, `train.patience` as the phase's selection
    (None: the last epoch's parameters)."""
    if not config.train.select_on:
        return None
    return loop.Select(config.train.select_on, config.train.patience,
                       minimize=config.train.select_mode == "min")


def check_patience_change(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A resume may change `train.patience` only where the run so far never waited that many
    evaluations for a better `train.select_on`: the straight run with the new patience would
    have reached the same epoch, so the resumed one equals it (a run extended under a
    patience of 0 keeps the protocol's stopping rule). Else a ConfigError, before anything is
    written."""
    saved, new = saved_config(workdir), config.train.patience
    old = (saved or {}).get("train", {}).get("patience", new)
    chooser = select(config)
    if old == new or not new or chooser is None:
        return
    scores = [chooser.score(line[chooser.metric]) for line in metrics.read(workdir)
              if chooser.metric in line and not line.get("final")]
    waited = selection.longest_wait(scores)
    if waited >= new:
        raise ConfigError(
            f"config field train.patience cannot change on resume ({old} -> {new}): the run "
            f"in {workdir} went {waited} evaluations without a better {chooser.metric}, so a "
            f"straight run would have stopped earlier; pass a new --workdir")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains the configured model, evaluates it, and leaves the run's files in `workdir`.

    Returns the summary (also written to `<workdir>/summary.json`). Raises ConfigError or
    data.DataError before writing anything when the config or the data is unusable.
    """
    datasets = load_and_check(config)
    check_patience_change(config, workdir)
    claim(config, workdir, datasets.record())
    mesh = parallel.make_mesh()
    built = setup(config, datasets, mesh)
    family, model, run_keys, images = built.family, built.model, built.run_keys, built.images
    run = loop.Run([workdir])
    data = eval_data(config, datasets, mesh)
    eval_terms = functools.partial(family.eval_terms, config, model)
    probe = (make_probe(config, model, datasets) if config.train.select_on == PROBE
             else lambda params: {})
    periodic, reported = split_evaluations(eval_terms, data.splits,
                                           config.eval.test_while_training, mesh)
    with_probe = lambda evaluate: evaluate and (
        lambda params, key: {**evaluate(params, key), **probe(params)})
    phase = loop.Phase(
        state=built.state, num_rounds=config.train.num_epochs,
        run=lambda s, _, key: built.train_epoch(s, images, key),
        evaluate=with_probe(periodic), evaluate_reported=with_probe(reported),
        checkpoint_dir=files.checkpoint_dir(workdir), keys=(run_keys.train, run_keys.eval),
        cadence=loop.cadence(config), select=select(config),
        display=loop.Display(headline=family.headline,
                             examples_per_round=built.steps_per_epoch
                             * config.train.batch_size))
    num_params = num_parameters(built.state.params)
    run.log(f"{config.experiment}: {datasets.name} ({datasets.num_train} train, "
            f"{datasets.test.images.shape[0]} test), {num_params:,} parameters, "
            f"{config.train.num_epochs} epochs of {built.steps_per_epoch} steps, learning rate "
            f"{config.train.learning_rate:g} "
            f"{schedules.describe(config.train.lr_schedule, built.tx_steps, built.steps_per_epoch)}"
            f"{parallel.describe_devices()}")
    result = run.train(phase)

    t0 = time.perf_counter()
    params = result.params  # the selected ones, with train.select_on
    with run.timed("evaluation"):
        final = family.final_metrics(config, model, params, data, run_keys.final, mesh)
    step = int(parallel.fetch(result.state.step))
    summary: dict[str, Any] = {
        "experiment": config.experiment, "dataset": datasets.name,
        "epochs": config.train.num_epochs, "steps": step, "num_params": num_params,
        **result.train[0], **result.eval[0], **final,
        "final_eval_seconds": time.perf_counter() - t0, "train_seconds": result.seconds,
        "examples_per_s": result.examples_per_s}
    if result.selected_round is not None:
        summary.update(selected_epoch=result.selected_round,
                       epochs_run=step // built.steps_per_epoch)
    def draw() -> None:
        family.pictures(config, model, parallel.fetch(params),
                        parallel.fetch(data.splits["test"]), data.image_shape,
                        run_keys.pictures, workdir)

    run.finish([summary], [{**final, "train_seconds": result.seconds}], pictures=[draw])
    return summary
