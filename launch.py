"""Runs one experiment: flags -> config -> aevb.train.train_and_evaluate.

    python launch.py --config=experiments/vae.py
    python launch.py --config=experiments/vae.py:paper --config.train.num_epochs=50
    python launch.py --config=experiments/vae.py --workdir=runs/my-vae   # resumes if present
    python launch.py --config=experiments/vae.py --distributed            # on every TPU host

Every config field can be overridden as --config.a.b=value; an unknown field, a wrong type
or an impossible value stops the run with exit status 2 before anything is written.
"""

import datetime
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Run directory; default: a fresh runs/<name>-<time>.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run (jax.distributed.initialize). On a TPU pod "
    "slice or under SLURM the next three flags can stay unset.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from aevb import configs, data, parallel, train  # after flag parsing: a fast --help

    if _DISTRIBUTED.value:
        parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                        _PROCESS_ID.value)
    if not flags.FLAGS["verbosity"].present:  # library INFO chatter (Orbax) off by default
        logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join(
        "runs", f"{config.experiment}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    try:
        train.train_and_evaluate(config, workdir)
    except (configs.ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except train.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
