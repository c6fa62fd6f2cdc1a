"""The results page (`python -m aevb.results`): its quick mode on the tiny data, and the
committed page and README block against what the committed records write."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from aevb import results
from aevb.results import __main__ as results_cli
from aevb.results import page as page_lib
from aevb.results import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_page_and_the_readme_are_what_the_records_write():
    """docs/results.md and the README's headline block, from docs/results/records/: an edit
    by hand to either (or a record without its page) fails here."""
    directory = os.path.join(REPO, "docs", "results", "records")
    records = runner.load_records(directory)
    tables = {table.key for table in results.TABLES}
    assert set(records) <= {row.key for row in results.ROWS} | tables
    with open(os.path.join(REPO, "docs", "results.md")) as f:
        assert f.read() == runner.page_from_records(directory)
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert results.current_block(readme) == runner.readme_block_from_records(directory)
    for key, record in records.items():  # each record's figures are committed beside it
        if key in tables:
            continue
        row = next(r for r in results.ROWS if r.key == key)
        for name in [*row.figures, *(["curves.png"] if row.curves else [])]:
            assert os.path.exists(os.path.join(REPO, "docs", "results", "figures",
                                               f"{key}-{name}")), (key, name)
        assert record["command"] == row.command()  # the row as it is now


def test_quick_mode_runs_rows_records_them_and_writes_the_page(tiny_idx_dir, tmp_path,
                                                               capsys, monkeypatch):
    """One row in quick mode on the tiny data, the default VAE: its record, its pictures
    and learning curves beside the page, its result in the page and the README block;
    every other row listed as not run; a second run runs nothing; an unknown row and a
    failing row are one line each."""
    root = tmp_path / "quick"
    flags = (f"--config.data.dir={tiny_idx_dir} --config.train.num_epochs=1 "
             "--config.eval.iwae_num_examples=20")
    args = ["--quick", f"--root={root}", f"--flags={flags}"]
    assert results_cli.main([*args, "--rows=vae"]) == 0
    records = runner.load_records(str(root / "results" / "records"))
    assert list(records) == ["vae"]
    record = records["vae"]
    assert record["command"] == ("python launch.py --config=experiments/vae.py:runlocal "
                                 + flags)
    summary = json.loads((root / "vae" / "summary.json").read_text())
    assert record["summary"]["test_log_likelihood"] == summary["test_log_likelihood"]
    assert record["wall_seconds"] > 0 and record["date"] and "core" in record["machine"]
    page = (root / "results.md").read_text()
    nats = f"{-summary['test_log_likelihood']:.2f} nats (−L_100, 20 test images)"
    assert f"| `vae` | `{record['command']}` | {nats} |" in page
    assert page.count("not run yet") == len(results.ROWS) - 1
    for name in ("reconstructions.png", "samples.png", "interpolations.png", "curves.png"):
        assert (root / "results" / "figures" / f"vae-{name}").stat().st_size > 1000
        assert f"(results/figures/vae-{name})" in page
    block = (root / "README-block.md").read_text()
    assert block.count("\n| `") == (sum(row.readme for row in results.ROWS)
                                     + sum(bool(t.headline) for t in results.TABLES))
    assert "`--sweep=protocol`, test error (%): not run yet" in block
    assert f"| `vae.py` | `vae`: {nats} |" in block

    capsys.readouterr()
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: pytest.fail("ran again"))
    assert results_cli.main([*args, "--rows=vae"]) == 0
    assert "vae: recorded already" in capsys.readouterr().out
    monkeypatch.undo()

    assert results_cli.main([*args, "--rows=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no row nope" in err[0]
    bad = ["--quick", f"--root={root}", f"--flags={flags} --config.model.latnt_dim=3",
           "--rows=autoencoder"]
    assert results_cli.main(bad) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "autoencoder" in err[0] and "exit status 2" in err[0]
    assert "latnt_dim" in (root / "autoencoder.log").read_text()


def test_a_table_keeps_each_finished_trial_and_shows_each_groups_mean_and_std(tmp_path):
    """`collect` keeps the finished trials of a sweep (the unfinished and M1's directory
    left out), once each; the table's cells are their mean ± sample std, in percent. A
    trial older than a field it is grouped by (b: no graph_neighbors in its config.json)
    goes with the field's default, which it ran with. A setting that acted on nothing in a
    trial (M1's selection and the graph's, for the labels-alone network f) reads '–'."""
    table = next(t for t in results.TABLES if t.key == "semisupervised-protocol")
    sweep = tmp_path / "sweep"
    trials = {"a": (100, "poisson", 0.75), "b": (100, "poisson", 0.65),
              "c": (1000, "poisson", 0.85), "d": (100, "svm", None),
              "e": (100, "poisson", 0.95), "f": (100, "mlp", 0.6)}
    for name, (num, classifier, accuracy) in trials.items():
        (sweep / name).mkdir(parents=True)
        config = {"labels": {"num": num, "num_validation": -1},
                  "semisupervised": {"features": "pixels" if name == "f" else "m1",
                                     "classifier": classifier,
                                     "graph_neighbors": [10] if name == "e" else [30, 20, 10]},
                  "train": {"select_on": "validation_probe_accuracy"}}
        if name == "b":
            del config["semisupervised"]["graph_neighbors"]
        (sweep / name / "config.json").write_text(json.dumps(config))
        if accuracy is not None:  # d is unfinished
            summary = {"task": "semisupervised", "test_accuracy": accuracy,
                       "features_seconds": 10.0, "classifier_seconds": 2.0}
            if classifier == "poisson":
                summary.update(m1_selected_epoch=3, graph_nodes=70)
            (sweep / name / "summary.json").write_text(json.dumps(summary))
    (sweep / "m1" / "probe-seed0-labels100").mkdir(parents=True)
    records = tmp_path / "records"
    assert runner.collect(table, str(sweep), str(records)) == 5
    assert runner.collect(table, str(sweep), str(records)) == 0  # kept already
    # a table that groups by other fields rewrites its records' groups, and back, keeping
    # the date each trial ran
    path = records / table.key / "a.json"
    path.write_text(path.read_text().replace(datetime.date.today().isoformat(), "2026-01-02"))
    narrower = dataclasses.replace(table, rows_by=table.rows_by[:2])
    assert runner.collect(narrower, str(sweep), str(records)) == 5
    assert runner.collect(table, str(sweep), str(records)) == 5
    assert json.loads(path.read_text())["date"] == "2026-01-02"
    kept, sittings = runner.load_table(str(records), table)
    assert sorted(t["trial"] for t in kept) == ["a", "b", "c", "e", "f"] and sittings == {}
    text = "\n".join(page_lib.render_table(table, kept, {"sittings": [
        {"wall_seconds": 1800.0}, {"wall_seconds": 1800.0}]}))
    chosen = "validation_probe_accuracy | [30, 20, 10]"
    assert (f"| 100 | m1 | poisson | {chosen} | 30.00 ± 7.07 | 3.00 ± 0.00 | 12.00 ± 0.00 | 2 |"
            in text)
    assert f"| 1000 | m1 | poisson | {chosen} | 15.00 | 3.00 | 12.00 | 1 |" in text
    assert ("| 100 | m1 | poisson | validation_probe_accuracy | [10] | 5.00 | 3.00 | 12.00 | 1 |"
            in text)
    assert "| 100 | pixels | mlp | – | – | 40.00 | – | 12.00 | 1 |" in text
    assert "5 trials kept" in text and "summed over its sittings (2): 1.00 h" in text

    def trial(num, features, classifier, select_on, accuracy, neighbors=(30, 20, 10)):
        return {"config": {"labels": {"num": num}, "train": {"select_on": select_on},
                           "semisupervised": {"features": features, "classifier": classifier,
                                              "graph_neighbors": list(neighbors)}},
                "summary": {"test_accuracy": accuracy}}
    bound = "validation_neg_elbo"
    trials = [trial(100, "m1", "poisson", bound, 0.75), trial(100, "m1", "poisson", bound, 0.73),
              trial(100, "m1", "poisson", bound, 0.9, neighbors=(10,)),  # the anchor's
              trial(100, "m1", "poisson", "validation_probe_accuracy", 0.5),
              trial(100, "pixels", "mlp", "validation_probe_accuracy", 0.7),
              trial(1000, "m1", "poisson", bound, 0.8)]
    assert page_lib.headline_text(table, trials) == (
        "M1 chosen by the bound + Poisson, 100 labels 26.00 ± 1.41 (2 draws); labels alone, "
        "100 labels 30.00 (1 draw); M1 chosen by the bound + Poisson, 1,000 labels 20.00 "
        "(1 draw)")


@pytest.mark.parametrize("key", [t.key for t in results.TABLES])
def test_the_trials_kept_by_earlier_sittings_are_restored_as_finished_trials(tmp_path, key):
    """On a fresh machine the sweep's workdir is empty: `restore_kept` puts every committed
    trial back (its config as the sweep defines it, its summary as kept), so that the sweep
    runs only the others; each restored config has the values its record says it ran with."""
    from aevb.sweeps.report import config_value

    table = next(t for t in results.TABLES if t.key == key)
    records = os.path.join(REPO, "docs", "results", "records")
    kept = runner.load_records(os.path.join(records, table.key))
    sweep = tmp_path / "sweep"
    assert runner.restore_kept(table, str(sweep), records) == len(kept) > 0
    assert runner.restore_kept(table, str(sweep), records) == 0  # there already
    for name, record in kept.items():
        config = json.loads((sweep / name / "config.json").read_text())
        for field in (table.columns_by, *table.rows_by):
            assert config_value(config, field) == config_value(record["config"], field), (
                name, field)
        # the table's variant too: `:bound,conv` has the conv M1
        assert config["model"]["architecture"] == ("conv" if "conv" in table.variant
                                                   else "mlp")
        summary = json.loads((sweep / name / "summary.json").read_text())
        assert summary == record["summary"]


def test_a_tables_flags_say_how_its_sweep_runs_and_its_record_keeps_them(
        tmp_path, monkeypatch, capsys):
    """`--table_flags` reach the sweep's command line and its sitting's record; a --config
    flag there, which would change what the kept trials mean, is one line and status 2."""
    bad = ["--rows=semisupervised-long", f"--root={tmp_path}",
           "--table_flags=--workers=8 --config.m2.num_epochs=3"]
    assert results_cli.main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--table_flags" in err[0] and "--config" in err[0]

    started = []
    popen = runner.subprocess.Popen

    def start(args, **kwargs):
        started.append(args)
        return popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr(runner.subprocess, "Popen", start)
    table = next(t for t in results.TABLES if t.key == "semisupervised-long")
    record = runner.run_table(table, str(tmp_path / "root"), str(tmp_path / "records"),
                              ["--workers=8"])
    assert started[0][-2:] == ["--workers=8",
                               f"--workdir={tmp_path / 'root' / 'semisupervised-long'}"]
    assert "--sweep=long" in started[0]
    assert record["sittings"][-1]["flags"] == "--workers=8"
    assert record["sittings"][-1]["trials_kept"] == 0


def test_results_are_written_in_the_papers_terms():
    """-L_k as nats, a test MSE with its ratio to PCA's, error rates in percent."""
    rows = {row.key: row for row in results.ROWS}
    summary = {"test_log_likelihood": -228.9227, "test_log_likelihood_k": 5000,
               "test_log_likelihood_examples": 10000, "selected_epoch": 557,
               "epochs_run": 607}
    assert page_lib.result_text(rows["likelihood"], {"summary": summary}) == (
        "228.92 nats (−L_5000, 10,000 test images), selected at epoch 557 of 607")
    summary = {"test_mse": 0.007, "pca_mse": 0.01562}
    assert page_lib.result_text(rows["stacked-deep"], {"summary": summary}) == (
        "test MSE 0.00700 = 0.448 × PCA-30 (0.01562)")
    assert page_lib.result_text(rows["stacked-deep-code16"], {"summary": {}}) == (
        "its summary has no test_mse")
    summary = {"test_accuracy": 0.8268, "labels_num": 100}
    assert page_lib.result_text(rows["semisupervised"], {"summary": summary}) == (
        "17.32% test error (M1 + SVM, 100 labels)")
    assert page_lib.result_text(rows["conv"], None) == "not run yet"
    assert page_lib.wall_text({"wall_seconds": 2710.4, "resumed": False}) == "45 min"
    assert page_lib.wall_text({"wall_seconds": 49.4, "resumed": True}) == (
        "49 s (its last sitting)")


def test_a_signal_to_the_runner_reaches_the_row_which_saves_and_the_runner_says_so(
        tmp_path, monkeypatch):
    """SIGTERM to the runner while a row runs: the row gets it (here a stand-in process that
    exits 75, as launch.py does after saving its round), the runner waits for it, and the
    row's error says that the same command resumes it; the runner's own handler is back."""
    stand_in = ("import signal, sys, time; "
                "signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); "
                "print('ready', flush=True); time.sleep(60)")
    popen = runner.subprocess.Popen

    def start(args, **kwargs):
        proc = popen([sys.executable, "-c", stand_in], **kwargs)
        log = Path(kwargs["stdout"].name)
        while "ready" not in log.read_text():  # its handler is installed
            time.sleep(0.05)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return proc

    monkeypatch.setattr(runner.subprocess, "Popen", start)
    before = signal.getsignal(signal.SIGTERM)
    row = next(r for r in results.ROWS if r.key == "autoencoder")
    with pytest.raises(runner.RowError, match="preempted.*the same command resumes it") as e:
        runner.run_row(row, str(tmp_path), str(tmp_path / "records"), str(tmp_path / "f"))
    assert e.value.status == runner.PREEMPTED
    assert signal.getsignal(signal.SIGTERM) == before
    assert not (tmp_path / "records").exists()
