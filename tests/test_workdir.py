"""A workdir is claimed once its config and data are checked (`aevb/run/workdir.py`): a resume
may add epochs under a constant learning rate, never under a schedule laid over the run, and
never runs on data other than the run's (their content hash in `data.json`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import launch
from aevb import data as data_lib
from aevb.config.checks import ConfigError
from aevb.run import files, lock
from aevb.run.workdir import claim, finished

# What claim records of the data when a test's run never loads them.
SOME_DATA = {"name": "some", "fingerprint": "0" * 64}


def _config(schedule: str, epochs: int):
    from experiments import vae

    config = vae.get_config()
    config.train.lr_schedule = schedule
    config.train.num_epochs = epochs
    return config


@pytest.mark.parametrize("schedule", ["cosine", "iwae"])
def test_more_epochs_under_a_schedule_is_refused_before_anything_is_written(tmp_path,
                                                                              schedule):
    workdir = str(tmp_path)
    claim(_config(schedule, 30), workdir, SOME_DATA)
    lock.release_all()
    before = sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()
    with pytest.raises(ConfigError, match=rf"train\.num_epochs.*30 -> 60.*{schedule}"):
        claim(_config(schedule, 60), workdir, SOME_DATA)
    assert (sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()) == before


def test_more_epochs_under_a_constant_rate_resumes(tmp_path):
    workdir = str(tmp_path)
    claim(_config("constant", 30), workdir, SOME_DATA)
    lock.release_all()
    claim(_config("constant", 60), workdir, SOME_DATA)
    with open(files.path(workdir, files.CONFIG)) as f:
        assert json.load(f)["train"]["num_epochs"] == 60


def test_the_refusal_is_one_line_and_exit_status_2(tmp_path, tiny_idx_dir, capsys):
    workdir = str(tmp_path / "run")
    config = _config("cosine", 30)
    config.data.dir = tiny_idx_dir
    claim(config, workdir, data_lib.load(config.data).record())  # as a cosine run of 30 left it
    lock.release_all()
    before = sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()
    status = launch.cli(["launch.py", "--config=experiments/vae.py",
                         f"--config.data.dir={tiny_idx_dir}", "--config.train.lr_schedule=cosine",
                         "--config.train.num_epochs=60", f"--workdir={workdir}",
                         "--compilation_cache="])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "train.num_epochs" in err[0]
    assert (sorted(os.listdir(workdir)), Path(files.path(workdir, files.CONFIG)).read_text()) == before


def test_a_resume_on_changed_data_is_refused_before_anything_is_written(tmp_path, capsys):
    """One pixel of the .npz changed after the run began: exit status 2, one line naming the
    workdir, and the workdir as it was (its data.json records the first content hash)."""
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8), np.uint8)
    path, workdir = tmp_path / "mine.npz", str(tmp_path / "run")
    np.savez(path, x_train=images)
    args = ["launch.py", "--config=experiments/vae.py", f"--config.data.path={path}",
            "--config.train.batch_size=4", f"--workdir={workdir}", "--compilation_cache="]
    config = _config("constant", 30)
    config.data.path, config.train.batch_size = str(path), 4
    claim(config, workdir, data_lib.load(config.data).record())
    lock.release_all()
    before = {name: Path(workdir, name).read_text() for name in os.listdir(workdir)}
    assert json.loads(before[files.DATA])["fingerprint"] == data_lib.load(config.data).fingerprint
    images[3, 4, 5] ^= 1
    np.savez(path, x_train=images)
    status = launch.cli(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert f"workdir {workdir} holds a run on other data" in err[0]
    assert {name: Path(workdir, name).read_text() for name in os.listdir(workdir)} == before


def test_a_run_older_than_a_field_is_finished_only_with_the_field_at_its_default(tmp_path):
    """A summary written before `semisupervised.graph_metric` existed (config.json without
    it) is the run of a config holding the default, what that run did, and of no config
    that sets another value, changes a field the run had, or lacks one of its fields."""
    workdir, config = str(tmp_path), _config("constant", 30)
    saved = json.loads(config.to_json())
    del saved["semisupervised"]["graph_metric"]
    Path(files.path(workdir, files.CONFIG)).write_text(json.dumps(saved))
    Path(files.path(workdir, files.SUMMARY)).write_text(json.dumps({"epochs": 30}))
    assert config.semisupervised.graph_metric == "euclidean"  # the default
    assert finished(config, workdir) == {"epochs": 30}
    config.semisupervised.graph_metric = "angular"
    assert finished(config, workdir) is None
    config.semisupervised.graph_metric, config.train.seed = "euclidean", 1
    assert finished(config, workdir) is None
    config.train.seed = 0
    saved["semisupervised"]["retired_field"] = 1
    Path(files.path(workdir, files.CONFIG)).write_text(json.dumps(saved))
    assert finished(config, workdir) is None
