"""Sweeps: definitions, validation before running, vectorized = alone, skip finished trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aevb import sweeps
from aevb.config import checks
from aevb.regimes import joint as train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_product_and_zip_and_names():
    trials = sweeps.product({"model.latent_dim": [2, 5], "train.seed": [0, 1]})
    assert trials == [{"model.latent_dim": 2, "train.seed": 0},
                      {"model.latent_dim": 2, "train.seed": 1},
                      {"model.latent_dim": 5, "train.seed": 0},
                      {"model.latent_dim": 5, "train.seed": 1}]
    zipped = sweeps.zip_({"sparsity.target": [0.05, 0.1], "sparsity.weight": [1e-3, 5e-3]})
    assert zipped == [{"sparsity.target": 0.05, "sparsity.weight": 1e-3},
                      {"sparsity.target": 0.1, "sparsity.weight": 5e-3}]
    assert sweeps.trial_name(trials[1]) == "latent_dim=2,seed=1"


@pytest.mark.parametrize("sweep, message", [
    ([{"model.latnt_dim": 3}], "no such config field"),
    ([{"model.latent_dim": "big"}], "model.latent_dim"),
    ([{"model.latent_dim": 0}], "model.latent_dim"),
    ([{"train.seed": 1}, {"train.seed": 1}], "same name"),
    ([], "non-empty"),
    ([{}], "non-empty dict"),
])
def test_bad_sweeps_fail_before_anything_runs(tiny_config, tmp_path, sweep, message):
    with pytest.raises(sweeps.SweepError, match=message):
        sweeps.run_sweep(tiny_config, sweep, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("helper", [sweeps.product, sweeps.zip_])
def test_empty_value_lists_are_refused(helper):
    with pytest.raises(sweeps.SweepError, match="empty"):
        helper({"train.seed": []})
    with pytest.raises(sweeps.SweepError, match="list of values"):
        helper({"train.seed": 3})


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_vectorized_trials_equal_the_same_trials_run_alone(tiny_config, tmp_path, objective):
    """Seeds, KL weights and peak rates in one program; with `iwae`, also k = 3 samples,
    a KL warm-up and a cosine schedule shared by the trials."""
    if objective == "iwae":
        tiny_config.train.objective, tiny_config.train.num_samples = "iwae", 3
        tiny_config.train.lr_schedule, tiny_config.train.kl_warmup_epochs = "cosine", 1
    sweep = sweeps.zip_({"train.seed": [0, 1, 2], "model.kl_weight": [1.0, 0.5, 1.0],
                         "train.learning_rate": [1e-3, 1e-3, 3e-3]})
    rows = sweeps.run_sweep(tiny_config, sweep, str(tmp_path / "sweep"))
    assert all(row["vectorized_trials"] == 3 for row in rows)
    assert (tmp_path / "sweep" / "sweep.csv").exists()
    assert (tmp_path / "sweep" / "sweep.md").exists()
    for row, (name, _, config) in zip(rows, sweeps.make_trials(tiny_config, sweep), strict=True):
        alone = train.train_and_evaluate(config, str(tmp_path / "alone" / name))
        for key in ("train_loss", "test_neg_elbo", "test_kl", "test_log_likelihood"):
            assert row[key] == pytest.approx(alone[key], rel=1e-4), (name, key)
        assert row["active_units"] == alone["active_units"]
        lines = (tmp_path / "sweep" / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 2]


def test_rerun_skips_finished_trials(tiny_config, tmp_path, monkeypatch):
    sweep = sweeps.product({"model.latent_dim": [2, 3]})  # not vectorizable: one by one
    workdir = tmp_path / "sweep"
    sweeps.run_sweep(tiny_config, sweep, str(workdir))
    (workdir / "latent_dim=3" / "summary.json").unlink()  # as if killed before the end
    calls = []
    original = train.train_and_evaluate
    monkeypatch.setattr(train, "train_and_evaluate",
                        lambda config, wd: calls.append(wd) or original(config, wd))
    rows = sweeps.run_sweep(tiny_config, sweep, str(workdir))
    assert calls == [str(workdir / "latent_dim=3")]
    assert [r["trial"] for r in rows] == ["latent_dim=2", "latent_dim=3"]
    table = (workdir / "sweep.md").read_text()
    assert "latent_dim=2" in table and "test_neg_elbo" in table

    # A finished trial is finished for its own config only: more epochs extend every trial.
    calls.clear()
    tiny_config.train.num_epochs += 1
    rows = sweeps.run_sweep(tiny_config, sweep, str(workdir))
    assert calls == [str(workdir / "latent_dim=2"), str(workdir / "latent_dim=3")]
    assert all(r["epochs"] == tiny_config.train.num_epochs for r in rows)


def test_launch_sweep_print_lists_one_command_per_trial():
    proc = subprocess.run([sys.executable, "launch.py", "--config=experiments/vae.py",
                           "--sweep_print", "--workdir=runs/latents"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5
    assert lines[0] == ("python launch.py --config=experiments/vae.py "
                        "--config.model.latent_dim=2 --workdir=runs/latents/latent_dim=2")


def test_a_sweep_says_why_trials_with_other_schedules_run_apart(tiny_config):
    sweep = sweeps.product({"train.lr_schedule": ["constant", "cosine"],
                            "train.learning_rate": [1e-3, 3e-3]})
    trials = sweeps.make_trials(tiny_config, sweep)
    groups = sweeps.group_for_vectorizing(trials)
    assert [len(g) for g in groups] == [2, 2]
    assert {t[2].train.lr_schedule for t in groups[0]} == {"constant"}
    note = sweeps.grouping_note(trials, groups)
    assert "train.lr_schedule" in note and "train.learning_rate," not in note.split("apart")[0]
    seeds = sweeps.make_trials(tiny_config, sweeps.product({"train.seed": [0, 1]}))
    assert sweeps.grouping_note(seeds, sweeps.group_for_vectorizing(seeds)) == ""


def test_rbg_trials_are_not_vectorized(tiny_config):
    """Under jax.vmap, rbg draws differ from the trial's own (2 seeds, 1 epoch: train loss
    541.3 alone, 535.2 vectorized), so a sweep runs rbg and unsafe_rbg trials one by one."""
    sweep = sweeps.product({"train.seed": [0, 1]})
    for impl, sizes in [("threefry2x32", [2]), ("rbg", [1, 1]), ("unsafe_rbg", [1, 1])]:
        tiny_config.train.prng_impl = impl
        groups = sweeps.group_for_vectorizing(sweeps.make_trials(tiny_config, sweep))
        assert [len(g) for g in groups] == sizes, impl


def test_worker_processes_give_the_trials_run_alone(tiny_config, tmp_path):
    """Two worker processes, one per core, each single-threaded, share the sweep: 3 seeds
    (one vectorizable group) as a vmapped pair and a single trial. A failing trial is raised
    as itself after the others end; the rerun runs only it; every trial equals the same
    trial run alone here."""
    tiny_config.train.num_epochs = 1
    sweep = sweeps.product({"train.seed": [0, 1, 2]})
    root = tmp_path / "sweep"
    (root / "seed=2").mkdir(parents=True)
    (root / "seed=2" / "config.json").write_text('{"train": {"seed": 7}}')
    with pytest.raises(checks.ConfigError, match="different config"):
        sweeps.run_sweep(tiny_config, sweep, str(root), num_workers=2)
    assert sorted(p.name for p in (root / "logs").iterdir()) == ["seed=0+1.log", "seed=2.log"]
    (root / "seed=2" / "config.json").unlink()
    rows = sweeps.run_sweep(tiny_config, sweep, str(root), num_workers=2)
    assert [row.get("vectorized_trials") for row in rows] == [2, 2, None]
    for row, (name, _, config) in zip(rows, sweeps.make_trials(tiny_config, sweep), strict=True):
        alone = train.train_and_evaluate(config, str(tmp_path / "alone" / name))
        for key in ("train_loss", "test_neg_elbo", "test_log_likelihood"):
            assert row[key] == pytest.approx(alone[key], rel=1e-4), (name, key)
