"""Runs one experiment, or a sweep of them: flags -> config -> aevb.router.

    python launch.py --config=experiments/vae.py
    python launch.py --config=experiments/vae.py:paper --config.train.num_epochs=50
    python launch.py --config=experiments/vae.py --workdir=runs/my-vae   # resumes if present
    python launch.py --config=experiments/vae.py --sweep --workdir=runs/vae-sweep
    python launch.py --config=experiments/vae.py --sweep_print           # one command a trial
    python launch.py --config=experiments/vae.py --distributed            # on every TPU host

Every config field can be overridden as --config.a.b=value; an unknown field, a wrong type
or an impossible value stops the run with exit status 2 before anything is written.
"""

import datetime
import importlib.util
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Run directory; default: a fresh runs/<name>-<time>.")
_SWEEP = flags.DEFINE_bool("sweep", False, "Run every trial of the file's get_sweep().")
_SWEEP_PRINT = flags.DEFINE_bool("sweep_print", False, "Print one command per trial; run none.")
_VECTORIZE = flags.DEFINE_bool("vectorize", True, "Sweeps: train trials that differ only in "
                               "seed or float hyperparameters together, as one program.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run (jax.distributed.initialize). On a TPU pod "
    "slice or under SLURM the next three flags can stay unset.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")


def _get_sweep() -> list[dict]:
    """The list of override dicts from the config file's get_sweep()."""
    from aevb import sweeps

    path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
    spec = importlib.util.spec_from_file_location("_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise sweeps.SweepError(f"{path} defines no get_sweep()")
    return module.get_sweep()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from aevb import checks, data, parallel, router, sweeps  # after flags: a fast --help

    if _DISTRIBUTED.value:
        parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                        _PROCESS_ID.value)
    if not flags.FLAGS["verbosity"].present:  # library INFO chatter (Orbax) off by default
        logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join(
        "runs", f"{config.experiment}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    try:
        if _SWEEP_PRINT.value:
            config_arg = config_flags.get_config_filename(flags.FLAGS["config"])
            print("\n".join(sweeps.commands(config_arg, workdir, _get_sweep(), config)))
        elif _SWEEP.value:
            router.run_sweep(config, _get_sweep(), workdir, vectorize=_VECTORIZE.value)
        else:
            router.run(config, workdir)
    except (checks.ConfigError, data.DataError, sweeps.SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except checks.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
