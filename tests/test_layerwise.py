"""Greedy layer-wise training: each phase trains its own layer only, the phases assemble into
the stack exactly, regimes apply per phase, and a run resumes mid-phase."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import comparable, interrupt_and_resume, small_layerwise_config

from aevb import data as data_lib
from aevb import families
from aevb.config import checks
from aevb.families.autoencoder import layer_model, layer_params, with_layer
from aevb.regimes import layerwise
from aevb.regimes.validation import validate
from aevb.training import keys
from aevb.training.train_state import make_optimizer


def _images(data_dir: str) -> jax.Array:
    train_split, _ = data_lib.load_idx_dir(data_dir)
    return jnp.asarray(train_split.images.reshape(-1, 784))


def _layer_leaves(k: int, n: int, tied: bool) -> set[str]:
    names = {f"encoder_kernel_{k}", f"encoder_bias_{k}", f"decoder_bias_{n - 1 - k}"}
    return names if tied else names | {f"decoder_kernel_{n - 1 - k}"}


@pytest.mark.parametrize("tied", [False, True])
def test_phases_change_only_their_layer_and_assemble_into_the_stack(tiny_idx_dir, tied):
    config = small_layerwise_config(tiny_idx_dir, tied)
    images = _images(tiny_idx_dir)
    family = families.get(config.model.kind)
    model = family.make_model(config.model, (28, 28, 1))
    stack = family.init_params(model, keys.run_keys(0).init, (28, 28, 1))
    n = 3
    tx = make_optimizer(config.train)
    for k in range(n):
        before = stack
        _, state, run_epoch = layerwise.layer_trainer(config, k, stack, images,
                                                      jax.random.key(k), tx)
        state, _ = run_epoch(state, 1, jax.random.fold_in(jax.random.key(k), 1))
        stack = with_layer(stack, k, state.params)
        assert int(state.step) == 1000 // 50
        for name, value in stack["params"].items():
            if name in _layer_leaves(k, n, tied):
                assert not np.array_equal(value, before["params"][name]), name
            else:  # bit-identical: the frozen layers below and the untrained ones above
                np.testing.assert_array_equal(value, before["params"][name], err_msg=name)

    # The assembled stack encodes as the phases' encoders composed, and reconstructs as
    # their decoders composed in reverse.
    phases = [layer_model(config.model, 784, k) for k in range(n)]
    x = data_lib.to_unit_interval(images[:64])
    h = x
    for k, phase in enumerate(phases):
        h = phase.apply(layer_params(stack, k), h, method=phase.encode)
    out = model.apply(stack, x)
    np.testing.assert_array_equal(out.code, h)
    for k in reversed(range(n)):
        phase = phases[k]
        h = phase.apply(layer_params(stack, k), h, method=phase.generate)
    np.testing.assert_allclose(out.x_hat, h, rtol=1e-6, atol=1e-7)
    assert jnp.all(jnp.isfinite(out.x_hat))


def test_regimes_apply_to_every_phase():
    """Noise corrupts each phase's input (codes included); sparsity acts on each phase's code."""
    from experiments import layerwise as experiment

    config = experiment.get_config("sparse,denoising")
    validate(config)
    model = layer_model(config.model, 784, 1)                  # 200 -> 200 -> 200, sigmoid
    assert (model.code_activation, model.output_activation) == ("sigmoid", "sigmoid")
    params = model.init(jax.random.key(0), jnp.zeros((1, 200)))
    codes = jax.random.uniform(jax.random.key(1), (64, 200))
    objective = families.get("autoencoder").objective(config, model, train=True,
                                                      reconstruction_loss="mse")
    terms = objective(params, codes, jax.random.key(2))
    clean_mse = jnp.mean((model.apply(params, codes).x_hat - codes) ** 2, axis=-1)
    assert not np.allclose(terms["recon"], clean_mse)         # its input was corrupted
    masked = jnp.where(jax.random.bernoulli(jax.random.key(2), 0.75, codes.shape), codes, 0.0)
    np.testing.assert_allclose(
        terms["recon"], jnp.mean((model.apply(params, masked).x_hat - codes) ** 2, -1),
        rtol=1e-5)
    assert float(terms["sparsity"][0]) > 0
    np.testing.assert_allclose(terms["loss"], terms["recon"] + 5e-3 * terms["sparsity"],
                               rtol=1e-6)


@pytest.mark.parametrize("change, field", [
    ({"model.kind": "vae", "noise.kind": "none"}, "train.schedule"),
    ({"train.schedule": "joint"}, "train.finetune_epochs"),
    ({"train.schedule": "greedy"}, "train.schedule"),
    ({"train.finetune_epochs": -1}, "train.finetune_epochs"),
    ({"sparsity.kind": "kl", "model.code_activation": "sigmoid"}, "model.activation"),
])
def test_layerwise_config_errors_name_the_field(change, field):
    from experiments import layerwise as experiment

    config = experiment.get_config()
    for key, value in change.items():
        section, name = key.split(".")
        config[section][name] = value
    with pytest.raises(checks.ConfigError, match=field):
        validate(config)


def _saved_epochs(phase_dir) -> list[int]:
    return sorted(int(p.name) for p in (phase_dir / "checkpoints").glob("*") if p.name.isdigit())


def test_interrupted_run_resumes_mid_phase(tiny_folder, tmp_path, monkeypatch):
    """SIGTERM in phase 2's first epoch, on data from a folder of PNG files without labels.
    The interrupted run also leaves the test split out of its periodic evaluations
    (`eval.test_while_training`): every phase reads it once, for its last epoch, with the
    key of that epoch's evaluation, so its numbers are the straight run's."""
    config = small_layerwise_config(tiny_folder)
    straight = layerwise.train_and_evaluate(config.copy_and_resolve_references(),
                                            str(tmp_path / "straight"))
    config.eval.test_while_training = False
    assert straight["phases"] == 3 and straight["steps"] == (3 * 2 + 1) * 20
    assert straight["test_mse"] < straight["assembled_test_mse"] < 0.2

    workdir = tmp_path / "interrupted"
    saved = {}

    def stopped_run(config, wd):
        try:
            return layerwise.train_and_evaluate(config, wd)
        finally:  # what a preemption in phase 2 leaves behind
            saved.setdefault("epochs", [_saved_epochs(workdir / f"phase_{k}") for k in (1, 2, 3)])

    resumed = interrupt_and_resume(monkeypatch, stopped_run, config, str(workdir), "phase_2", 1)
    # Phase 1's last epoch, phase 2's preemption save (no periodic checkpoint was due).
    assert saved["epochs"] == [[2], [1], []]
    assert comparable(resumed) == comparable(straight)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert [r.get("phase") for r in lines[:-1]] == (["phase_1"] * 2 + ["phase_2"] * 2
                                                    + ["phase_3"] * 2 + ["assembled",
                                                                         "finetune"])
    assert lines[-1]["final"]
    tested = [r.get("phase") for r in lines if any(k.endswith("test_mse") for k in r)]
    assert tested == ["assembled"]  # the assembled stack's evaluation is reported as such
