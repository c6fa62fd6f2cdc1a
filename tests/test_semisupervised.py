"""The semi-supervised regime (aevb/regimes/semisupervised.py): balanced labeled batches, M1 with a
host classifier selected on the validation split, M2 and M1 + M2 through the loop, and
kill-and-resume equality of the label-scarce runs."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import comparable, interrupt_and_resume, small_semisupervised_config

from aevb import data as data_lib
from aevb import regimes
from aevb.config.checks import ConfigError
from aevb.regimes import labels as labels_lib
from aevb.regimes import validation
from aevb.training import epoch


def test_balanced_batches_hold_each_class_equally_without_repeats():
    labels = jnp.asarray(np.random.default_rng(0).permutation(np.repeat(np.arange(4), 7)))
    idx = np.asarray(epoch.balanced_batches(jax.random.key(0), labels, 4, 3, num_steps=50))
    assert idx.shape == (50, 12)
    for batch in idx:
        assert len(set(batch)) == 12
        np.testing.assert_array_equal(np.asarray(labels)[batch], np.repeat(np.arange(4), 3))
    # Over the steps every labeled example is drawn, about equally often.
    counts = np.bincount(idx.ravel(), minlength=28)
    assert counts.min() > 0 and counts.max() < 2 * counts.mean()


def _small_conv(config) -> None:
    """One conv layer of 4 filters, stride 2 (28 -> 14): compiles in seconds."""
    conv = config.model.conv
    conv.channels, conv.kernels, conv.strides, conv.pools, conv.paddings = (
        (4,), (3,), (2,), (1,), ("same",))


@pytest.mark.parametrize("variant", ["m2", "m1m2"])
def test_m2_trains_selects_and_resumes_after_a_kill(tiny_idx_dir, tmp_path, monkeypatch,
                                                    variant):
    """M2 on pixels, killed in its first epoch, resumes to the straight run (the regime's
    resume test); a dense M2 on the codes of a conv M1."""
    config = small_semisupervised_config(tiny_idx_dir, variant)
    if variant == "m1m2":
        config.model.architecture, config.model.activation = "conv", "relu"
        _small_conv(config)
        config.eval.iwae_num_examples = 0
    straight = regimes.run(config.copy_and_resolve_references(), str(tmp_path / "straight"))
    assert straight["classifier"] == "m2" and 0 < straight["test_accuracy"] <= 1
    assert straight["train_loss"] > 0 and 0 < straight["train_entropy"] <= np.log(10)
    lines = [json.loads(line)
             for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if r.get("phase") == "m2"]
    assert epochs[1]["m2/train_loss"] < epochs[0]["m2/train_loss"]  # it learns
    best = max(epochs, key=lambda r: (r["m2/validation_accuracy"], -r["epoch"]))
    assert straight["selected_epoch"] == best["epoch"]
    assert straight["test_accuracy"] == best["m2/test_accuracy"]
    assert {"class_samples.png", "analogies.png"} <= {p.name for p in
                                                      (tmp_path / "straight").iterdir()}

    # labels.hold_out: the 100 validation images train neither M1 nor M2
    num_train = len(data_lib.load(config.data).train.labels)
    assert straight["unlabeled_examples"] == num_train - 200
    if variant == "m1m2":
        assert straight["features"] == "m1" and 0 < straight["m1_active_units"] <= 4
        m1_data = json.loads((tmp_path / "straight" / "m1" / "data.json").read_text())
        assert (m1_data["train"], m1_data["validation"]) == (num_train - 100, 100)
        assert "m1_validation_neg_elbo" in straight
    else:
        resumed = interrupt_and_resume(monkeypatch, regimes.run, config,
                                       str(tmp_path / "interrupted"), "m2", 1)
        assert comparable(resumed) == comparable(straight)


def test_m2_never_trains_on_the_validation_labels(tiny_idx_dir):
    """The labeled set M2 reads is the labeled subset; the validation examples lie outside
    it (their images are unlabeled data, as every training image is)."""
    config = small_semisupervised_config(tiny_idx_dir, "m2")
    labels = data_lib.load(config.data).train.labels
    labeled, held_out = labels_lib.labeled_and_validation(config, labels)
    assert len(labeled) == len(held_out) == 100 and not set(labeled) & set(held_out)


def test_m2_on_conv_trunks_trains_predicts_and_evaluates_at_its_cadence(tiny_idx_dir,
                                                                         tmp_path):
    """m2.architecture=conv on pixels: q(y|x), q(z|x, y) and p(x|y, z) on the conv trunks
    of model.conv; evaluated every m2.eval_every_epochs epochs and at the last."""
    config = small_semisupervised_config(tiny_idx_dir, "m2")
    config.m2.architecture, config.m2.num_epochs, config.m2.eval_every_epochs = "conv", 3, 2
    _small_conv(config)
    summary = regimes.run(config, str(tmp_path / "run"))
    assert 0 < summary["test_accuracy"] <= 1 and np.isfinite(summary["train_loss"])
    lines = [json.loads(line)
             for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r["epoch"] for r in lines
                 if r.get("phase") == "m2" and "m2/validation_accuracy" in r]
    assert evaluated == [2, 3] and summary["selected_epoch"] in (2, 3)
    assert {"class_samples.png", "analogies.png"} <= {p.name for p in
                                                      (tmp_path / "run").iterdir()}


def test_conv_m2_on_m1_codes_is_refused_in_one_line(tiny_idx_dir):
    config = small_semisupervised_config(tiny_idx_dir, "m1m2")
    config.m2.architecture = "conv"
    with pytest.raises(ConfigError, match=r"m2\.architecture.*\['mlp'\]") as error:
        validation.validate(config)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kind, metric", [("poisson", "euclidean"), ("spreading", "euclidean"),
                                          ("laplace", "angular")])
def test_graph_classifiers_predict_the_test_images_as_unlabeled_nodes(tiny_idx_dir, tmp_path,
                                                                      kind, metric):
    """The graph holds every training and test image; the test images' predictions are
    read at their own nodes: misaligned, the accuracy would be chance (0.1)."""
    config = small_semisupervised_config(tiny_idx_dir, "nn")
    config.semisupervised.classifier = kind
    config.semisupervised.graph_metric = metric
    summary = regimes.run(config, str(tmp_path / "run"))
    splits = data_lib.load(config.data)
    assert summary["graph_metric"] == metric
    assert summary["graph_nodes"] == len(splits.train.labels) + len(splits.test.labels)
    assert summary["transductive"] and summary["labels_num_validation"] == 100
    assert 0.55 < summary["test_accuracy"] < 1 and 0.55 < summary["validation_accuracy"] <= 1
    # over the 1,100 unlabeled nodes: the 900 training ones' and the 200 test ones' accuracy
    train_part = (summary["unlabeled_accuracy"] * 1100 - summary["test_accuracy"] * 200) / 900
    assert 0.55 < train_part < 1


def test_m1_is_the_epoch_its_probe_chooses(tiny_idx_dir, tmp_path):
    """train.select_on='validation_probe_accuracy': each epoch of M1 a logistic regression
    (C = 1) on the labeled examples' posterior means is scored on the validation ones; the
    features are those of the best epoch. Recomputed here with scikit-learn directly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from aevb import families
    from aevb.regimes import pretrain

    config = small_semisupervised_config(tiny_idx_dir, "m1")
    config.semisupervised.classifier = "logistic"
    config.train.num_epochs, config.eval.every_epochs = 4, 1
    config.train.learning_rate = 3e-3
    config.train.select_on, config.train.select_mode = "validation_probe_accuracy", "max"
    summary = regimes.run(config, str(tmp_path / "run"))
    lines = [json.loads(line) for line in
             (tmp_path / "run" / "m1" / "metrics.jsonl").read_text().splitlines()]
    probes = [r["validation_probe_accuracy"] for r in lines if "validation_probe_accuracy" in r]
    assert len(probes) == 4 and summary["m1_selected_epoch"] == 1 + int(np.argmax(probes))

    splits = data_lib.load(config.data)
    labeled, held_out = labels_lib.labeled_and_validation(config, splits.train.labels)
    _, params = pretrain.pretrain_autoencoder(config, str(tmp_path / "run" / "m1"),
                                              splits.image_shape, None)  # finished: loaded
    family = families.get("vae")
    model = family.make_model(config.model, splits.image_shape)
    grey = splits.train.images.reshape(len(splits.train.labels), -1) / 255.0
    means = [np.asarray(family.posterior(config, model, params, jnp.asarray(grey[i]))["mean"])
             for i in (labeled, held_out)]
    active = np.var(np.concatenate(means), axis=0) > 0.01
    scaler = StandardScaler().fit(means[0][:, active])
    fitted = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(means[0][:, active]),
                                                          splits.train.labels[labeled])
    accuracy = np.mean(fitted.predict(scaler.transform(means[1][:, active]))
                       == splits.train.labels[held_out])
    assert accuracy == pytest.approx(max(probes), abs=1e-9)


def test_runs_that_need_the_same_m1_share_it(tiny_idx_dir, tmp_path):
    """semisupervised.m1_workdir: the second run (another classifier) loads the M1 the
    first trained, without training it again."""
    config = small_semisupervised_config(tiny_idx_dir, "m1")
    config.semisupervised.m1_workdir = "shared"
    config.semisupervised.classifier = "logistic"
    first = regimes.run(config.copy_and_resolve_references(), str(tmp_path / "a"))
    metrics = (tmp_path / "m1" / "shared" / "metrics.jsonl").read_text()
    config.semisupervised.classifier = "poisson"
    second = regimes.run(config, str(tmp_path / "b"))
    assert (tmp_path / "m1" / "shared" / "metrics.jsonl").read_text() == metrics
    m1 = {k: v for k, v in first.items() if k.startswith("m1_")}
    assert m1 == {k: v for k, v in second.items() if k.startswith("m1_")}
    assert not (tmp_path / "a" / "m1").exists() and second["classifier"] == "poisson"


@pytest.mark.parametrize("sweep,variant,num_trials,num_m1", [
    ("protocol", "", 115, 20), ("long", "", 50, 10), ("graph", "bound,conv", 75, 10)])
def test_a_sweep_shares_an_m1_exactly_among_trials_that_need_the_same(sweep, variant,
                                                                      num_trials, num_m1):
    """--sweep=protocol, long and graph: valid trials with flat, distinct names; trials
    naming the same shared M1 have the same phase-1 config, and different names differ
    (the anchor's protocol runs on the M1 of a draw's 100-label trials: no M1 of its own)."""
    from aevb import sweeps
    from aevb.regimes import pretrain
    from experiments import semisupervised as experiment

    trials = experiment.get_sweep(sweep)
    names = [sweeps.trial_name(t) for t in trials]
    assert len(set(names)) == len(trials) == num_trials and not any("/" in n for n in names)
    by_name = {}
    for overrides in trials:
        config = sweeps.apply_overrides(experiment.get_config(variant), overrides)
        validation.validate(config)
        if config.semisupervised.features == "m1":
            phase1 = pretrain.phase1_config(config).to_json()
            by_name.setdefault(config.semisupervised.m1_workdir, set()).add(phase1)
    assert len(by_name) == num_m1 and all(len(c) == 1 for c in by_name.values())
    assert len({c for configs in by_name.values() for c in configs}) == num_m1
