"""Unsupervised pretraining for a classifier with few labels.

Phase 1 trains an autoencoder of the family, or the VAE, on every training image without
reading a label: an ordinary run of the configured model (joint or layer-wise, with its
noise and sparsity regimes) in `<workdir>/autoencoder`, by the function the router passes
in. Phase 2 puts a softmax head on the lower `classifier.encoder_layers` layers of its
encoder, as its family exports them (`aevb/regimes/classifier.py`), and trains it with
cross-entropy on `labels.num` labeled training examples, class-balanced and chosen by
`labels.seed`, the encoder `frozen` (only the head learns) or `trainable`. The baseline,
in the same run, trains the identical classifier from its random initialisation, every
layer trainable, on the same examples, in the same batches, for the same
`classifier.num_steps` steps. Both classifiers train through the one loop
(`aevb/training/loop.py`), in rounds of `classifier.eval_every_steps` steps, on the device mesh.
Model selection reads a labeled validation split only (`labels.num_validation` examples,
class-balanced, outside the labeled ones; default as many): each classifier is the one of
its round with the best validation accuracy, training stops after `classifier.patience`
rounds without a better one, and the test set is only reported.

Run files, in `workdir`: `config.json`; `autoencoder/` (the phase-1 run's own files);
`classifier_pretrained/checkpoints` and `classifier_scratch/checkpoints` (one per round);
`metrics.jsonl` (`phase`: `pretrained` or `scratch`, metric names prefixed by it; `epoch`
counts rounds over both classifiers); `accuracy.png` (test accuracy against steps);
`summary.json`: the autoencoder's summary, then, per classifier, `<name>_test_accuracy`
and `<name>_validation_accuracy` of the selected round and `<name>_selected_step`, the
difference `accuracy_gain`, and the sizes of the labeled and validation sets.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from aevb import families
from aevb.config import defaults
from aevb.config.checks import CheckpointError
from aevb.regimes import classifier
from aevb.regimes.labels import labeled_and_validation
from aevb.regimes.prepare import flat_images, load_and_check
from aevb.run import checkpoints, files, lock, parallel
from aevb.run.workdir import claim, finished, lock_workdir
from aevb.training import keys, loop
from aevb.training.selection import Selection, restorable, unpack
from aevb.training.train_state import TrainState, apply_gradients, make_optimizer

Params = dict[str, Any]
NAMES = ("pretrained", "scratch")


def classifier_optimizer(section: ml_collections.ConfigDict,
                         frozen: bool) -> optax.GradientTransformation:
    """`classifier.optimizer` over `classifier.num_steps`; with a frozen encoder, only the
    head's parameters move."""
    tx = make_optimizer(section, section.num_steps)
    if not frozen:
        return tx
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                                 classifier.frozen_labels)


@functools.lru_cache(maxsize=64)
def make_round(model, section_json: str, frozen: bool, binarize: str, num_steps: int,
               mesh: Mesh | None = None) -> Callable[..., tuple[TrainState, dict]]:
    """`round(state, images u8 [N, D], labels [N], key) -> (state, metrics)`, jitted once.

    `num_steps` steps of `classifier.batch_size` examples in one `lax.scan`: the batches are
    cut from consecutive permutations of the N labeled examples (each example once per
    pass), drawn from the key, and split over the mesh. With a frozen encoder its parameters
    are behind `stop_gradient` and the optimizer leaves them as they are. Metrics: mean
    cross-entropy and accuracy over the round's batches. Cached per configuration (the
    `classifier` section as JSON), so classifiers of one shape share one compilation.
    """
    section = ml_collections.ConfigDict(json.loads(section_json))
    tx = classifier_optimizer(section, frozen)
    batch_size = section.batch_size

    def step(state: TrainState, idx: jax.Array, images: jax.Array, labels: jax.Array):
        x = classifier.inputs(parallel.shard_batch(images[idx], mesh), binarize)
        y = parallel.shard_batch(labels[idx], mesh)

        def loss_fn(params):
            params = classifier.stop_encoder_gradient(params) if frozen else params
            terms = classifier.cross_entropy_terms(model, params, x, y)
            return jnp.mean(terms["loss"]), terms

        return apply_gradients(state, tx, loss_fn)

    def run(state: TrainState, images: jax.Array, labels: jax.Array, key: jax.Array):
        n = images.shape[0]
        num_passes = -(-num_steps * batch_size // n)
        perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
            jax.random.split(key, num_passes))
        idx = perms.reshape(-1)[:num_steps * batch_size].reshape(num_steps, batch_size)
        state, metrics = jax.lax.scan(lambda s, i: step(s, i, images, labels), state, idx)
        return state, jax.tree.map(jnp.mean, metrics)

    if mesh is None:
        return jax.jit(run, donate_argnums=0)
    return jax.jit(run, donate_argnums=0, out_shardings=parallel.replicated(mesh))


def classifier_phase(config: ml_collections.ConfigDict, model, params: Params, frozen: bool,
                     labeled: tuple[jax.Array, jax.Array], test: tuple[jax.Array, np.ndarray],
                     key: jax.Array, mesh: Mesh | None, checkpoint_dir: str, name: str = "",
                     validation: tuple[jax.Array, np.ndarray] | None = None) -> loop.Phase:
    """One classifier's training as a loop phase: rounds of `classifier.eval_every_steps`
    steps (the last may be shorter); the loop hands the round ending at step s
    the key with s folded in;
    each round ends with the validation and test accuracies. labeled: (uint8 images [N, D],
    labels [N]); test and validation: (classifier inputs [M, D], labels [M]).

    With a validation split (M > 0) the phase selects the round of the best validation
    accuracy and stops early after `classifier.patience` rounds without a better one (the
    loop's `Phase.select`); without one it reports the last round.
    """
    cc = config.classifier
    every, total = cc.eval_every_steps, cc.num_steps
    section_json = cc.to_json()
    state = TrainState.create(jax.tree.map(jnp.copy, params), classifier_optimizer(cc, frozen))
    if mesh is not None:
        state = parallel.replicate(state, mesh)

    def run(state: TrainState, r: int, round_key: jax.Array):
        num_steps = min(every, total - (r - 1) * every)
        round_fn = make_round(model, section_json, frozen, config.data.binarize, num_steps, mesh)
        return round_fn(state, *labeled, round_key)

    selects = validation is not None and len(validation[1]) > 0
    splits = {"test": test, **({"validation": validation} if selects else {})}

    def evaluate(p, _):
        return {f"{split}_accuracy": classifier.accuracy(model, p, x, y, mesh=mesh)
                for split, (x, y) in splits.items()}

    return loop.Phase(
        state=state, run=run, num_rounds=-(-total // every), evaluate=evaluate,
        checkpoint_dir=checkpoint_dir, keys=(key, None),
        cadence=loop.cadence(config, "classifier"),
        select=loop.Select("validation_accuracy", cc.patience) if selects else None,
        display=loop.Display(name=name, headline="accuracy",
                             examples_per_round=every * cc.batch_size, steps_per_round=every,
                             total_steps=total, learning_rate_field="classifier.learning_rate"))


def pretrain_autoencoder(config: ml_collections.ConfigDict, workdir: str,
                         image_shape: tuple[int, int, int],
                         train_autoencoder: Callable[[ml_collections.ConfigDict, str], dict]
                         ) -> tuple[dict[str, Any], Params]:
    """Phase 1: the configured autoencoder (or VAE) trained on the images in `workdir`
    (resuming there) by `train_autoencoder(config, workdir)`, with `task` = reconstruct;
    returns its summary and its trained parameters (the selected ones under
    `train.select_on`). It reads images only, and labels only for the probe's selection
    (`aevb/regimes/probe.py`).
    A finished run (`workdir.finished`, with this config) is not run again; `workdir` may
    be shared by runs that need the same phase 1 (`semisupervised.m1_workdir`): the first
    trains it, holding its lock, and the others wait for it, then load it."""
    ae_config = phase1_config(config)
    family = families.get(config.model.kind)
    model = family.make_model(config.model, image_shape)
    template = TrainState.create(family.init_params(model, jax.random.key(0), image_shape),
                                 make_optimizer(config.train))
    ckpt_dir = files.checkpoint_dir(workdir)
    selects = Selection(template.params) if config.train.select_on else None

    def trained_params() -> Params:  # the selected ones, with train.select_on
        state, selection = unpack(
            checkpoints.latest_state(ckpt_dir, restorable(template, selects)), selects)
        return state.params if selection is None else selection.params

    lock_workdir(workdir, wait=True)
    try:
        summary = finished(ae_config, workdir)
        if summary is not None:
            try:
                return summary, trained_params()
            except CheckpointError as e:  # the run resumes from the newest good one
                loop.Run.log(f"{e}; running the autoencoder again")
        summary = train_autoencoder(ae_config, workdir)
        return summary, trained_params()
    finally:
        lock.release(workdir)


PHASE2_SECTIONS = ("classifier", "semisupervised", "m2")  # what phase 1 never reads


def phase1_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config of phase 1's run: `task` = reconstruct and the sections only phase 2
    reads at their defaults, so that runs that differ only in phase 2 (another classifier)
    have the same phase 1, which they can share."""
    ae_config = config.copy_and_resolve_references()
    ae_config.task = "reconstruct"
    base = defaults.base_config()
    for section in PHASE2_SECTIONS:
        ae_config[section] = base[section]
    return ae_config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       train_autoencoder: Callable[[ml_collections.ConfigDict, str], dict]
                       ) -> dict[str, Any]:
    """Pretrains the configured autoencoder without labels (by `train_autoencoder`), then
    trains the classifier on its encoder and the scratch baseline on the labeled subset;
    evaluates both on the test set. Returns the summary (also in `<workdir>/summary.json`).
    Raises ConfigError or data.DataError before writing anything when the config, the data
    or the labeled subset is unusable."""
    datasets = load_and_check(config, share=False)  # labeled examples picked across every row
    labeled, held_out = labeled_and_validation(config, datasets.train.labels)
    claim(config, workdir, datasets.record())
    cc = config.classifier
    ae_summary, ae_params = pretrain_autoencoder(
        config, os.path.join(workdir, "autoencoder"), datasets.image_shape, train_autoencoder)

    mesh = parallel.make_mesh()
    run_keys = keys.run_keys(config.train.seed, config.train.prng_impl)
    num_classes = int(datasets.train.labels.max()) + 1
    model, pretrained, scratch = classifier.build(
        families.get(config.model.kind), config.model, datasets.image_shape, num_classes,
        ae_params, cc.encoder_layers, keys.classifier_keys(run_keys).init)
    images = flat_images(datasets.train)[labeled]
    labeled_set = parallel.replicate((images, datasets.train.labels[labeled]), mesh)
    inputs = lambda split, idx=slice(None): (parallel.replicate(classifier.inputs(
        jnp.asarray(flat_images(split)[idx]), config.data.binarize), mesh), split.labels[idx])
    test, validation = inputs(datasets.test), inputs(datasets.train, held_out)
    dirs = {name: files.checkpoint_dir(workdir, f"classifier_{name}") for name in NAMES}
    num_rounds = -(-cc.num_steps // cc.eval_every_steps)
    run = loop.Run([workdir])
    run.log(f"classifier on {len(labeled)} labeled examples, {cc.num_steps} steps of "
            f"{cc.batch_size}, selected on {len(held_out)} labeled validation examples; "
            f"pretrained encoder {cc.encoder}, against the same classifier from scratch")
    summary: dict[str, Any] = {**ae_summary, "experiment": config.experiment,
                               "task": "pretrain", "labels_num": len(labeled),
                               "labels_num_validation": len(held_out),
                               "classifier_encoder": cc.encoder, "classifier_steps": cc.num_steps}
    labeled_x = inputs(datasets.train, labeled)
    runs = {"pretrained": (pretrained, cc.encoder == "frozen"), "scratch": (scratch, False)}
    for name, (params, frozen) in runs.items():
        result = run.train(classifier_phase(
            config, model, params, frozen, labeled_set, test,
            keys.classifier_keys(run_keys).train, mesh, dirs[name], name,
            validation=validation))
        summary.update({f"{name}_{k}": v for k, v in result.eval[0].items()})
        summary[f"{name}_labeled_accuracy"] = classifier.accuracy(
            model, result.params, *labeled_x, mesh=mesh)
        summary[f"{name}_selected_step"] = min(
            (result.selected_round or num_rounds) * cc.eval_every_steps, cc.num_steps)
        summary[f"{name}_seconds"] = result.seconds
    summary["accuracy_gain"] = (summary["pretrained_test_accuracy"]
                                - summary["scratch_test_accuracy"])
    final = {k: v for k, v in summary.items() if k.endswith("accuracy") or k == "accuracy_gain"}
    run.finish([summary], [final], pictures=[
        lambda: classifier.save_accuracy_plot(
            workdir, NAMES, min(cc.eval_every_steps, cc.num_steps))])
    return summary
