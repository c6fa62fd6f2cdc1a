"""Sweeps: definitions, validation before running, vectorized = alone, skip finished trials,
named sweeps on the command line, the grouped report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics

import numpy as np
import pytest

import launch
from aevb import sweeps
from aevb.config import checks
from aevb.regimes import joint as train
from aevb.sweeps import report, runner
from aevb.training import loop

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
    assert (sweeps.trial_name({"train.seed": 0, "labels.seed": 0, "labels.num": 100})
            == "train.seed=0,labels.seed=0,num=100")


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


def test_vectorized_trials_equal_the_same_trials_run_alone(tiny_config, tmp_path):
    """Seeds, KL weights and peak rates in one program: a conv VAE (one layer of 4 filters,
    stride 2) with the VampPrior (K = 6) on k = 3 samples of the IWAE bound, with a KL
    warm-up and a cosine schedule shared by the trials. (Dense trials on the ELBO under the
    standard prior: the worker test below.)"""
    tiny_config.model.architecture, tiny_config.model.activation = "conv", "relu"
    tiny_config.model.hidden_sizes = ()
    conv = tiny_config.model.conv
    conv.channels, conv.kernels, conv.strides, conv.pools, conv.paddings = (
        (4,), (3,), (2,), (1,), ("same",))
    tiny_config.model.prior, tiny_config.model.num_pseudo_inputs = "vampprior", 6
    tiny_config.train.objective, tiny_config.train.num_samples = "iwae", 3
    tiny_config.train.lr_schedule, tiny_config.train.kl_warmup_epochs = "cosine", 1
    tiny_config.eval.test_while_training = False  # the test split read at the end only
    sweep = sweeps.zip_({"train.seed": [0, 1], "model.kl_weight": [1.0, 0.5],
                         "train.learning_rate": [1e-3, 3e-3]})
    rows = sweeps.run_sweep(tiny_config, sweep, str(tmp_path / "sweep"))
    assert all(row["vectorized_trials"] == 2 for row in rows)
    assert (tmp_path / "sweep" / "sweep.csv").exists()
    assert (tmp_path / "sweep" / "sweep.md").exists()
    for row, (name, _, config) in zip(rows, sweeps.make_trials(tiny_config, sweep), strict=True):
        alone = train.train_and_evaluate(config, str(tmp_path / "alone" / name))
        for key in ("train_loss", "test_neg_elbo", "test_kl", "test_log_likelihood"):
            # float32 rounding of a batched conv: 1e-4 of a loss of ~500, 1e-3 nats of a KL
            assert row[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-3), (name, key)
        assert row["active_units"] == alone["active_units"]
        lines = [json.loads(line) for line in
                 (tmp_path / "sweep" / name / "metrics.jsonl").read_text().splitlines()]
        assert [line["epoch"] for line in lines] == [1, 2, 2]
        assert not [line for line in lines if "test_neg_elbo" in line]


def test_rerun_skips_finished_trials(tiny_config, tiny_npz, tmp_path, monkeypatch):
    """Preempted (SIGTERM) in trial seed=1's first epoch, the sweep stops with status 75's
    exception and the rerun runs that trial alone. On data from an .npz file, which then
    changes: a rerun refuses even the finished trials, whose results came from other data."""
    npz = tmp_path / "mine.npz"
    shutil.copy(tiny_npz, npz)
    tiny_config.data.dir, tiny_config.data.path = "", str(npz)
    sweep = sweeps.product({"train.seed": [0, 1]})
    workdir = tmp_path / "sweep"
    round_keys = loop.Phase.round_keys

    def signalled(phase, r):
        if r == 1 and "seed=1" in phase.checkpoint_dir:
            os.kill(os.getpid(), signal.SIGTERM)
        return round_keys(phase, r)

    with monkeypatch.context() as patch:
        patch.setattr(loop.Phase, "round_keys", signalled)
        with pytest.raises(checks.Preempted, match="stopped after epoch 1"):
            sweeps.run_sweep(tiny_config, sweep, str(workdir), vectorize=False)  # one by one
    assert (workdir / "seed=0" / "summary.json").exists()
    assert not (workdir / "seed=1" / "summary.json").exists()
    calls = []
    original = train.train_and_evaluate
    monkeypatch.setattr(train, "train_and_evaluate",
                        lambda config, wd: calls.append(wd) or original(config, wd))
    rows = sweeps.run_sweep(tiny_config, sweep, str(workdir), vectorize=False)
    assert calls == [str(workdir / "seed=1")]
    assert [r["trial"] for r in rows] == ["seed=0", "seed=1"]
    table = (workdir / "sweep.md").read_text()
    assert "seed=0" in table and "test_neg_elbo" in table

    # A finished trial is finished for its own config only: more epochs extend every trial.
    calls.clear()
    tiny_config.train.num_epochs += 1
    rows = sweeps.run_sweep(tiny_config, sweep, str(workdir), vectorize=False)
    assert calls == [str(workdir / "seed=0"), str(workdir / "seed=1")]
    assert all(r["epochs"] == tiny_config.train.num_epochs for r in rows)

    arrays = dict(np.load(npz))
    arrays["x_train"][0, 0, 0] ^= 1
    np.savez(npz, **arrays)
    calls.clear()
    with pytest.raises(sweeps.SweepError, match="trial seed=0: workdir .* other data"):
        sweeps.run_sweep(tiny_config, sweep, str(workdir), vectorize=False)
    assert calls == []


def test_launch_sweep_print_lists_one_command_per_trial(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    status = launch.cli(["launch.py", "--config=experiments/vae.py", "--sweep_print",
                         "--workdir=runs/latents"])
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = out.strip().splitlines()
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
    as itself after the others end, and the workers' rerun would run only it; the pair the
    worker trained equals the same trials run alone here."""
    tiny_config.train.num_epochs = 1
    sweep = sweeps.product({"train.seed": [0, 1, 2]})
    trials = sweeps.make_trials(tiny_config, sweep)
    root = tmp_path / "sweep"
    (root / "seed=2").mkdir(parents=True)
    (root / "seed=2" / "config.json").write_text('{"train": {"seed": 7}}')
    with pytest.raises(checks.ConfigError, match="different config"):
        sweeps.run_sweep(tiny_config, sweep, str(root), num_workers=2)
    assert sorted(p.name for p in (root / "logs").iterdir()) == ["seed=0+1.log", "seed=2.log"]
    (root / "seed=2" / "config.json").unlink()
    units = runner._units(sweeps.group_for_vectorizing(trials), str(root), 2)
    assert [[name for name, _ in unit] for unit in units] == [["seed=2"]]
    rows = sweeps.run_sweep(tiny_config, sweep, str(root))  # seed=2, in this process
    assert [row.get("vectorized_trials") for row in rows] == [2, 2, None]
    # Another seed, other numbers (the same seed, the same numbers: every resume test and
    # the pinned experiments of tests/test_experiments.py).
    assert len({row["train_loss"] for row in rows}) == 3
    for row, (name, _, config) in zip(rows[:2], trials[:2], strict=True):
        alone = train.train_and_evaluate(config, str(tmp_path / "alone" / name))
        for key in ("train_loss", "test_neg_elbo", "test_log_likelihood"):
            assert row[key] == pytest.approx(alone[key], rel=1e-4), (name, key)


def test_worker_processes_keep_the_users_xla_flags(monkeypatch):
    """The workers' single-threading flags are added to XLA_FLAGS, not put in its place;
    workers sharing an accelerator do not preallocate its memory."""
    from aevb.sweeps import workers

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with workers._environment(workers.WORKER_ENVIRONMENT):
        assert os.environ["XLA_FLAGS"] == ("--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen="
                                           "false intra_op_parallelism_threads=1")
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert "OMP_NUM_THREADS" not in os.environ


NAMED_SWEEPS = """
from aevb import sweeps
from experiments import vae


def get_config():
    config = vae.get_config()
    config.data.dir = {data_dir!r}
    config.model.hidden_sizes, config.model.latent_dim = (16,), 2
    config.train.num_epochs, config.train.batch_size = 1, 100
    config.eval.iwae_k, config.eval.iwae_num_examples, config.eval.num_images = 4, 20, 4
    return config


def get_sweep(name=""):
    return sweeps.named(name, {{
        "": lambda: sweeps.product({{"model.latent_dim": [2, 3, 4]}}),
        "seeds": lambda: sweeps.product({{"train.seed": [0, 1]}})}}, "named.py")
"""


def test_a_named_sweep_is_chosen_on_the_command_line(tiny_idx_dir, tmp_path, capsys,
                                                      monkeypatch):
    """--sweep_print and --sweep take the sweep's name (--sweep alone: the default sweep);
    an unknown name is one line and exit status 2, before anything is written."""
    path = tmp_path / "named.py"
    path.write_text(NAMED_SWEEPS.format(data_dir=tiny_idx_dir))
    workdir = tmp_path / "sweep"
    flags = [f"--config={path}", f"--workdir={workdir}", "--compilation_cache="]

    assert launch.cli(["launch.py", *flags, "--sweep_print"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert launch.cli(["launch.py", *flags, "--sweep_print=seeds"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[3] for line in lines] == ["--config.train.seed=0",
                                                   "--config.train.seed=1"]
    assert launch.cli(["launch.py", *flags, "--sweep=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --sweep=nope: named.py has no sweep of that name; use --sweep, "
                   "--sweep=seeds")
    assert not workdir.exists()

    ran = []  # what launch hands the sweep runner (which tests above cover)
    monkeypatch.setattr(sweeps, "run_sweep", lambda base, sweep, root, **_: ran.append(sweep))
    assert launch.cli(["launch.py", *flags, "--sweep=seeds"]) == 0
    assert launch.cli(["launch.py", *flags, "--sweep"]) == 0
    assert ran == [[{"train.seed": 0}, {"train.seed": 1}],
                   [{"model.latent_dim": d} for d in (2, 3, 4)]]


def _trial(root, name: str, config: dict, summary: dict | None) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.json").write_text(json.dumps(config))
    if summary is not None:
        (root / name / "summary.json").write_text(json.dumps(summary))


def test_the_report_gives_mean_and_sample_std_per_group(tmp_path, capsys):
    """Hand-written trials: grouped by a nested and a top-level config field, ordered by
    their values; mean ± std with n - 1 (checked against `statistics`), a group's lone
    trial as its mean, a field some trials lack counted per cell; unfinished trials and
    directories without config.json left out."""
    root = tmp_path / "sweep"
    accuracies = {100: [0.70, 0.74, 0.69], 1000: [0.82, 0.83, 0.80]}
    for num, values in accuracies.items():
        for seed, acc in enumerate(values):
            summary = {"test_accuracy": acc, "steps": 10 * (seed + 1)}
            if seed < 2:
                summary["gain"] = acc - 0.5
            _trial(root, f"num={num},seed={seed}", {"labels": {"num": num, "seed": seed},
                                                    "task": "pretrain"}, summary)
    _trial(root, "num=600,seed=0", {"labels": {"num": 600, "seed": 0}, "task": "pretrain"},
           {"test_accuracy": 0.9, "steps": 5})
    _trial(root, "num=600,seed=1", {"labels": {"num": 600, "seed": 1}, "task": "pretrain"},
           None)  # unfinished
    (root / "logs").mkdir()

    out = tmp_path / "report.md"
    assert report.main([str(root), "--group_by=labels.num,task",
                        "--fields=test_accuracy,gain,steps", "--scale=100", "--format=.3f",
                        f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    lines = printed.splitlines()
    assert lines[0] == ("7 finished trials in " + str(root) + " (1 unfinished, left out); "
                        "values x 100; mean ± sample std (n - 1) over each group's trials.")
    assert lines[2] == "| labels.num | task | test_accuracy | gain | steps | n |"

    def cell(xs: list[float]) -> str:
        return f"{100 * statistics.mean(xs):.3f} ± {100 * statistics.stdev(xs):.3f}"

    assert lines[4] == (f"| 100 | pretrain | {cell(accuracies[100])} | "
                        f"{cell([a - 0.5 for a in accuracies[100][:2]])} (n=2) | "
                        f"{cell([10, 20, 30])} | 3 |")
    assert lines[5] == "| 600 | pretrain | 90.000 | – | 500.000 | 1 |"
    assert lines[6].startswith(f"| 1000 | pretrain | {cell(accuracies[1000])} |")
    assert cell(accuracies[1000]) == "81.667 ± 1.528"  # by hand: sqrt(7/3) / 100

    assert report.main([str(root), "--fields=test_accuracy"]) == 0  # one group of all seven
    every = [*accuracies[100], *accuracies[1000], 0.9]
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"| {statistics.mean(every):.4g} ± {statistics.stdev(every):.4g} | 7 |")

    for args, message in [(["--group_by=labels.nmu"], "labels.nmu is not a config field"),
                          (["--group_by=labels"], "a config section"),
                          (["--fields=test_acc"], "no trial reports test_acc")]:
        assert report.main([str(root), "--fields=test_accuracy", *args]) == 2
        assert message in capsys.readouterr().err
    assert report.main([str(tmp_path / "none")]) == 2
