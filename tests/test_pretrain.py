"""Unsupervised pretraining: phase 1 never reads a label, the classifier reuses the encoder
exactly, a frozen encoder stays frozen, the labeled subset is balanced, a run resumes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aevb import configs, pretrain, train
from aevb import data as data_lib

TIMING = ("_seconds", "examples_per_s")


def _small_config(data_dir: str, variant: str = ""):
    from experiments import pretrain as experiment

    config = experiment.get_config(variant)
    config.data.dir = data_dir
    config.model.hidden_sizes = (32,)
    config.model.latent_dim = 8
    config.train.num_epochs = 1
    config.train.batch_size = 50
    config.eval.batch_size = 100
    config.eval.iwae_k = 5
    config.eval.iwae_num_examples = 10
    config.eval.num_images = 4
    config.labels.num = 100
    config.classifier.num_steps = 60
    config.classifier.eval_every_steps = 20
    config.classifier.batch_size = 50
    return config


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
    config = _small_config(tiny_idx_dir)
    real_load = data_lib.load
    poisoned = _poisoned(real_load(config.data))
    monkeypatch.setattr(data_lib, "load", lambda _: poisoned)

    summary, params = pretrain.pretrain_autoencoder(config, str(tmp_path / "ae"), 784)
    assert summary["steps"] == 1000 // 50 and params["params"]
    with pytest.raises(LabelRead):  # the poison is live: phase 2's first look at a label
        pretrain.labeled_subset(poisoned.train.labels, 100, 0)
    with pytest.raises(LabelRead):
        np.asarray(poisoned.test.labels)


def test_labeled_subset_is_balanced_seeded_and_nested():
    labels = np.repeat(np.arange(10, dtype=np.int32), 50)[np.random.default_rng(0).permutation(500)]
    for num in (10, 100, 105, 499):
        idx = pretrain.labeled_subset(labels, num, seed=3)
        counts = np.bincount(labels[idx], minlength=10)
        assert len(idx) == len(set(idx)) == num and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(pretrain.labeled_subset(labels, 100, 3),
                                  pretrain.labeled_subset(labels, 100, 3))
    assert set(pretrain.labeled_subset(labels, 100, 3)) != set(pretrain.labeled_subset(labels,
                                                                                       100, 4))
    assert set(pretrain.labeled_subset(labels, 100, 3)) <= set(pretrain.labeled_subset(labels,
                                                                                       300, 3))
    np.testing.assert_array_equal(pretrain.labeled_subset(labels, 0, 3), np.arange(500))
    with pytest.raises(configs.ConfigError, match="labels.num"):
        pretrain.labeled_subset(labels, 510, 0)


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_classifier_encoder_is_the_pretrained_encoder(kind):
    """With an identity head the classifier's logits are the autoencoder's code (the VAE:
    the mean of q(z|x)), so the pretrained layers are reused exactly."""
    from experiments import pretrain as experiment

    config = experiment.get_config("vae" if kind == "vae" else "")
    config.model.hidden_sizes, config.model.latent_dim = (32, 16), 8
    model = train.make_model(config.model, 784)
    ae_params = train.create_train_state(model, train.make_optimizer(config.train),
                                         jax.random.key(0), 784).params
    classifier, pretrained, scratch = pretrain.build_classifiers(config, 784, 8, ae_params)
    assert classifier.widths == (784, 32, 16, 8)
    head = {"head_kernel": jnp.eye(8), "head_bias": jnp.zeros(8)}
    x = jax.random.uniform(jax.random.key(1), (5, 784))
    logits = classifier.apply(pretrain.with_encoder(pretrained, head), x)
    code = model.apply(ae_params, x, method=model.encode)
    np.testing.assert_allclose(logits, code[0] if kind == "vae" else code, rtol=1e-5, atol=1e-6)
    assert not np.allclose(classifier.apply(pretrain.with_encoder(scratch, head), x), logits)
    for name in ("head_kernel", "head_bias"):  # the same head initialisation
        np.testing.assert_array_equal(pretrained["params"][name], scratch["params"][name])

    config.classifier.encoder_layers = 1
    classifier, pretrained, _ = pretrain.build_classifiers(config, 784, 10, ae_params)
    assert classifier.widths == (784, 32) and "encoder_kernel_1" not in pretrained["params"]


@pytest.mark.parametrize("encoder", ["frozen", "trainable"])
def test_frozen_encoder_stays_and_the_head_learns(tiny_idx_dir, encoder):
    config = _small_config(tiny_idx_dir)
    config.classifier.encoder = encoder
    train_split, _ = data_lib.load_idx_dir(tiny_idx_dir)
    images = jnp.asarray(train_split.images.reshape(-1, 784)[:200])
    labels = jnp.asarray(train_split.labels[:200])
    ae = train.make_model(config.model, 784)
    ae_params = ae.init(jax.random.key(0), jnp.zeros((1, 784)))
    model, pretrained, _ = pretrain.build_classifiers(config, 784, 10, ae_params)
    frozen = encoder == "frozen"
    tx = pretrain.make_classifier_optimizer(config.classifier, frozen)
    state = pretrain.create_classifier_state(pretrained, tx)
    history = []
    state = pretrain.fit_classifier(config.classifier, model, state, frozen, "none", images,
                                    labels, jax.random.key(1),
                                    on_round=lambda step, _, m: history.append((step, m)))
    assert [step for step, _ in history] == [20, 40, 60] and int(state.step) == 60
    assert history[-1][1]["loss"] < history[0][1]["loss"]
    for name, value in state.params["params"].items():
        unchanged = np.array_equal(value, pretrained["params"][name])
        assert unchanged == (frozen and pretrain.is_encoder(name)), name


def test_cross_entropy_against_numpy():
    model = pretrain.Classifier((6, 4), ("tanh",), num_classes=3)
    params = model.init(jax.random.key(0), jnp.zeros((1, 6)))
    x = jax.random.normal(jax.random.key(1), (5, 6))
    y = jnp.array([0, 2, 1, 1, 0])
    terms = pretrain.cross_entropy_terms(model, params, x, y)
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
    with pytest.raises(configs.ConfigError, match=field):
        configs.validate(config)


def test_labels_beyond_the_data_fail_before_writing(tiny_idx_dir, tmp_path):
    config = _small_config(tiny_idx_dir)
    config.labels.num = 2000
    with pytest.raises(configs.ConfigError, match="labels.num"):
        pretrain.train_and_evaluate(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


class _Interrupted(Exception):
    pass


def test_run_compares_with_scratch_and_resumes(tiny_idx_dir, tmp_path, monkeypatch):
    config = _small_config(tiny_idx_dir)
    straight = pretrain.train_and_evaluate(config.copy_and_resolve_references(),
                                           str(tmp_path / "straight"))
    assert straight["experiment"] == "pretrain" and straight["labels_num"] == 100
    for name in ("pretrained", "scratch"):
        assert 0.15 < straight[f"{name}_test_accuracy"] <= 1  # 10 classes: chance is 0.1
    assert straight["accuracy_gain"] == pytest.approx(
        straight["pretrained_test_accuracy"] - straight["scratch_test_accuracy"])
    assert {"accuracy.png", "summary.json", "autoencoder"} <= {
        p.name for p in (tmp_path / "straight").iterdir()}

    original = pretrain.round_callback

    def stop_in_scratch(writer, manager, name, *args):
        callback = original(writer, manager, name, *args)

        def on_round(step, state, metrics):
            callback(step, state, metrics)      # logged and checkpointed, then "killed"
            if name == "scratch" and step == 20:
                raise _Interrupted
        return on_round

    monkeypatch.setattr(pretrain, "round_callback", stop_in_scratch)
    workdir = tmp_path / "interrupted"
    with pytest.raises(_Interrupted):
        pretrain.train_and_evaluate(config.copy_and_resolve_references(), str(workdir))
    monkeypatch.setattr(pretrain, "round_callback", original)
    resumed = pretrain.train_and_evaluate(config, str(workdir))
    comparable = lambda s: {k: v for k, v in s.items() if not k.endswith(TIMING)}
    assert comparable(resumed) == comparable(straight)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("phase")) for r in lines[:-1]] == [
        (1, "pretrained"), (2, "pretrained"), (3, "pretrained"),
        (4, "scratch"), (5, "scratch"), (6, "scratch")]
    assert lines[-1]["final"]
