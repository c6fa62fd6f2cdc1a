"""Unsupervised pretraining: phase 1 never reads a label, the classifier reuses the encoder
exactly, a frozen encoder stays frozen, the labeled subset is balanced, a run resumes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import comparable, interrupt_and_resume, model_and_state, small_pretrain_config

from aevb import data as data_lib
from aevb import regimes as router
from aevb.config import checks
from aevb.models import Classifier, DenseEncoder
from aevb.regimes import classifier as classifier_family
from aevb.regimes import labels as labels_lib
from aevb.regimes import pretrain
from aevb.regimes.validation import validate


class LabelRead(AssertionError):
    """Raised by `PoisonedLabels` when anything looks at a label's value."""


class PoisonedLabels:
    """Stands in for a split's labels: its length, dtype and rank can be asked (a Split
    checks them), any value, conversion, comparison or other attribute raises LabelRead."""

    dtype = np.dtype(np.int32)
    ndim = 1

    def __init__(self, n: int):
        self.shape = (n,)

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, *args, **kwargs):
        raise LabelRead("a label was read")

    __array__ = __getitem__ = __iter__ = __eq__ = __ne__ = __lt__ = __gt__ = _read
    __le__ = __ge__ = __int__ = __index__ = __bool__ = __hash__ = _read

    def __getattr__(self, name: str):
        raise LabelRead(f"labels.{name} was read")


def _poisoned(datasets: data_lib.Datasets) -> data_lib.Datasets:
    poison = lambda split: data_lib.Split(split.images, PoisonedLabels(len(split)))
    return data_lib.Datasets(name=datasets.name, train=poison(datasets.train), validation=None,
                             test=poison(datasets.test))


def test_pretraining_never_reads_labels(tiny_idx_dir, tmp_path, monkeypatch):
    config = small_pretrain_config(tiny_idx_dir)
    real_load = data_lib.load
    poisoned = _poisoned(real_load(config.data))
    monkeypatch.setattr(data_lib, "load", lambda _: poisoned)

    summary, params = pretrain.pretrain_autoencoder(config, str(tmp_path / "ae"),
                                                    (28, 28, 1), router.run)
    assert summary["steps"] == 1000 // 50 and params["params"]
    with pytest.raises(LabelRead):  # the poison is live: phase 2's first look at a label
        labels_lib.labeled_subset(poisoned.train.labels, 100, 0)
    with pytest.raises(LabelRead):
        np.asarray(poisoned.test.labels)


def test_labeled_subset_is_balanced_seeded_and_nested():
    labels = np.repeat(np.arange(10, dtype=np.int32), 50)[np.random.default_rng(0).permutation(500)]
    for num in (10, 100, 105, 499):
        idx = labels_lib.labeled_subset(labels, num, seed=3)
        counts = np.bincount(labels[idx], minlength=10)
        assert len(idx) == len(set(idx)) == num and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(labels_lib.labeled_subset(labels, 100, 3),
                                  labels_lib.labeled_subset(labels, 100, 3))
    assert set(labels_lib.labeled_subset(labels, 100, 3)) != set(labels_lib.labeled_subset(labels,
                                                                                       100, 4))
    assert set(labels_lib.labeled_subset(labels, 100, 3)) <= set(labels_lib.labeled_subset(labels,
                                                                                       300, 3))
    np.testing.assert_array_equal(labels_lib.labeled_subset(labels, 0, 3), np.arange(500))
    with pytest.raises(checks.ConfigError, match="labels.num"):
        labels_lib.labeled_subset(labels, 510, 0)


def test_validation_subset_is_balanced_outside_the_labeled_and_leaves_them_as_they_were():
    labels = np.repeat(np.arange(10, dtype=np.int32), 50)[np.random.default_rng(0).permutation(500)]
    for num, num_validation in ((100, 100), (10, 30), (200, 300)):
        labeled = labels_lib.labeled_subset(labels, num, seed=3)
        held_out = labels_lib.validation_subset(labels, labeled, num_validation, seed=3)
        counts = np.bincount(labels[held_out], minlength=10)
        assert len(held_out) == len(set(held_out)) == num_validation
        assert counts.max() - counts.min() <= 1 and not set(held_out) & set(labeled)
        np.testing.assert_array_equal(held_out, labels_lib.validation_subset(labels, labeled,
                                                                           num_validation, 3))
    # The labeled subset does not depend on the validation split (README figures stay valid).
    config = small_pretrain_config("unused")
    for num_validation in (-1, 0, 250):
        config.labels.num_validation = num_validation
        labeled, held_out = labels_lib.labeled_and_validation(config, labels)
        np.testing.assert_array_equal(labeled, labels_lib.labeled_subset(labels, 100, 0))
        assert len(held_out) == {-1: 100, 0: 0, 250: 250}[num_validation]
    with pytest.raises(checks.ConfigError, match="labels.num_validation"):
        labels_lib.validation_subset(labels, labels_lib.labeled_subset(labels, 100, 3), 401, 3)


def test_hold_out_moves_exactly_the_validation_examples_out_of_training():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10, dtype=np.int32), 50)[rng.permutation(500)]
    images = rng.integers(0, 256, (500, 2, 2, 1), dtype=np.uint8)
    split = data_lib.Split(images=images, labels=labels)
    datasets = data_lib.Datasets(name="blobs", train=split, validation=None, test=split)
    config = small_pretrain_config("unused")
    assert labels_lib.hold_out(config, datasets) is datasets  # labels.hold_out=False
    config.labels.hold_out = True
    moved = labels_lib.hold_out(config, datasets)
    _, held_out = labels_lib.labeled_and_validation(config, labels)
    rest = np.setdiff1d(np.arange(500), held_out)
    np.testing.assert_array_equal(moved.validation.images, images[held_out])
    np.testing.assert_array_equal(moved.train.labels, labels[rest])
    assert len(moved.train.images) == 400
    with pytest.raises(ValueError, match="no validation split"):
        labels_lib.hold_out(config, moved)


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_classifier_encoder_is_the_pretrained_encoder(kind):
    """With an identity head the classifier's logits are the autoencoder's code (the VAE:
    the mean of q(z|x)), so the pretrained layers are reused exactly."""
    from experiments import pretrain as experiment

    config = experiment.get_config("vae" if kind == "vae" else "")
    config.model.hidden_sizes, config.model.latent_dim = (32, 16), 8
    family, model, _, state = model_and_state(config)
    ae_params = state.params
    classifier, pretrained, scratch = classifier_family.build(
        family, config.model, (28, 28, 1), 8, ae_params, 0, jax.random.key(3))
    head = {"kernel": jnp.eye(8), "bias": jnp.zeros(8)}
    with_head = lambda p: {"params": {**p["params"], "head": head}}
    x = jax.random.uniform(jax.random.key(1), (5, 784))
    logits = classifier.apply(with_head(pretrained), x)
    code = model.apply(ae_params, x, method=model.encode)
    np.testing.assert_allclose(logits, code.mean() if kind == "vae" else code, rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(classifier.apply(with_head(scratch), x), logits)
    np.testing.assert_array_equal(pretrained["params"]["head"]["kernel"],
                                  scratch["params"]["head"]["kernel"])  # the same head init

    classifier, pretrained, _ = classifier_family.build(family, config.model, (28, 28, 1), 10,
                                                        ae_params, 1, jax.random.key(3))
    h = classifier.encoder.apply({"params": pretrained["params"]["encoder"]}, x)
    assert h.shape == (5, 32)  # the lower layer only


@pytest.mark.parametrize("encoder", ["frozen", "trainable"])
def test_frozen_encoder_stays_and_the_head_learns(tiny_idx_dir, tmp_path, encoder):
    config = small_pretrain_config(tiny_idx_dir)
    config.classifier.encoder = encoder
    train_split, test_split = data_lib.load_idx_dir(tiny_idx_dir)
    images = jnp.asarray(train_split.images.reshape(-1, 784)[:200])
    labels = jnp.asarray(train_split.labels[:200])
    test_x = classifier_family.inputs(jnp.asarray(test_split.images.reshape(-1, 784)), "none")
    family, _, _, state = model_and_state(config)
    model, pretrained, _ = classifier_family.build(family, config.model, (28, 28, 1), 10,
                                                   state.params, 0, jax.random.key(3))
    frozen = encoder == "frozen"
    phase = pretrain.classifier_phase(config, model, pretrained, frozen, (images, labels),
                                      (test_x, test_split.labels), jax.random.key(1), None,
                                      str(tmp_path / "ckpt"))
    history = []
    state = phase.state
    for r in range(1, phase.num_rounds + 1):
        state, metrics = phase.run(state, r, phase.round_keys(r)[0])
        history.append(float(metrics["loss"]))
    assert phase.num_rounds == 3 and int(state.step) == 60
    assert history[-1] < history[0]
    flat = lambda p: dict(jax.tree_util.tree_leaves_with_path(p))
    before, after = flat(pretrained), flat(state.params)
    for path, value in after.items():
        unchanged = np.array_equal(value, before[path])
        assert unchanged == (frozen and path[1].key == "encoder"), path


def test_cross_entropy_against_numpy():
    model = Classifier(DenseEncoder((6, 4), ("tanh",)), num_classes=3)
    params = model.init(jax.random.key(0), jnp.zeros((1, 6)))
    x = jax.random.normal(jax.random.key(1), (5, 6))
    y = jnp.array([0, 2, 1, 1, 0])
    terms = classifier_family.cross_entropy_terms(model, params, x, y)
    logits = np.asarray(model.apply(params, x), np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(terms["loss"], -log_p[np.arange(5), np.asarray(y)], rtol=1e-5)
    np.testing.assert_array_equal(terms["accuracy"], logits.argmax(-1) == np.asarray(y))


@pytest.mark.parametrize("change, field", [
    ({"classifier.encoder": "half"}, "classifier.encoder"),
    ({"classifier.encoder_layers": 3}, "classifier.encoder_layers"),
    ({"classifier.num_steps": 0}, "classifier.num_steps"),
    ({"classifier.learning_rate": 0.0}, "classifier.learning_rate"),
    ({"labels.num": -5}, "labels.num"),
    ({"labels.num_validation": -2}, "labels.num_validation"),
    ({"classifier.patience": -1}, "classifier.patience"),
    ({"task": "classify"}, "task"),
])
def test_pretrain_config_errors_name_the_field(change, field):
    from experiments import pretrain as experiment

    config = experiment.get_config()
    for key, value in change.items():
        node = config
        *parents, name = key.split(".")
        for parent in parents:
            node = node[parent]
        node[name] = value
    with pytest.raises(checks.ConfigError, match=field):
        validate(config)


def test_labels_beyond_the_data_fail_before_writing(tiny_idx_dir, tmp_path):
    config = small_pretrain_config(tiny_idx_dir)
    config.labels.num = 2000
    with pytest.raises(checks.ConfigError, match="labels.num"):
        router.run(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_run_compares_with_scratch_and_resumes(tiny_npz, tmp_path, monkeypatch):
    """On data and labels from an .npz file."""
    config = small_pretrain_config(tiny_npz)
    straight = router.run(config.copy_and_resolve_references(), str(tmp_path / "straight"))
    assert straight["experiment"] == "pretrain" and straight["labels_num"] == 100
    for name in ("pretrained", "scratch"):
        assert 0.15 < straight[f"{name}_test_accuracy"] <= 1  # 10 classes: chance is 0.1
    assert straight["accuracy_gain"] == pytest.approx(
        straight["pretrained_test_accuracy"] - straight["scratch_test_accuracy"])
    assert {"accuracy.png", "summary.json", "autoencoder"} <= {
        p.name for p in (tmp_path / "straight").iterdir()}
    # Each classifier is the one of its best validation accuracy (the earliest of equals);
    # the test accuracy reported is that round's, whatever the test accuracies of the others.
    lines = [json.loads(line)
             for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert straight["labels_num_validation"] == 100
    for name in ("pretrained", "scratch"):
        rounds = [r for r in lines if r.get("phase") == name]
        best = max(rounds, key=lambda r: (r[f"{name}/validation_accuracy"], -r["step"]))
        start = rounds[0]["step"] - 20  # the run's step before this classifier's first
        assert straight[f"{name}_selected_step"] == best["step"] - start
        assert straight[f"{name}_validation_accuracy"] == best[f"{name}/validation_accuracy"]
        assert straight[f"{name}_test_accuracy"] == best[f"{name}/test_accuracy"]

    workdir = tmp_path / "interrupted"
    resumed = interrupt_and_resume(monkeypatch, router.run, config, str(workdir), "scratch", 1)
    assert comparable(resumed) == comparable(straight)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("phase"), r["step"]) for r in lines] == [
        (1, "pretrained", 20), (2, "pretrained", 40), (3, "pretrained", 60),
        (4, "scratch", 80), (5, "scratch", 100), (6, "scratch", 120), (6, None, 120)]
    assert lines[-1]["final"]
