"""Runs one experiment, or a sweep of them: flags -> config -> aevb.sweeps.

    python launch.py --config=experiments/vae.py
    python launch.py --config=experiments/vae.py:paper --config.train.num_epochs=50
    python launch.py --config=experiments/vae.py --workdir=runs/my-vae   # resumes if present
    python launch.py --config=experiments/vae.py --sweep --workdir=runs/vae-sweep
    python launch.py --config=experiments/iwae.py --sweep=figures  # get_sweep("figures")
    python launch.py --config=experiments/vae.py --sweep --workers=-1  # a process per core
    python launch.py --config=experiments/vae.py --config.train.profile=True  # a trace
    python launch.py --config=experiments/vae.py --sweep_print           # one command a trial
    python -m aevb.sweeps.report runs/vae-sweep --group_by=model.latent_dim  # mean ± std
    python launch.py --config=experiments/vae.py --distributed            # on every TPU host

Every config field can be overridden as --config.a.b=value. Sweeps: an experiment file's
`get_sweep(name="")` returns the trials' overrides; `--sweep` runs its default sweep and
`--sweep=NAME` the one called NAME (`--sweep_print[=NAME]` likewise), every trial in
`<workdir>/<trial name>`. A user's mistake (an unknown flag, field, variant or sweep name, a
missing config file, a wrong type or an impossible value, unusable data, a busy or unusable
workdir, no restorable checkpoint) is one line on stderr and exit status 2, and nothing is
written; a non-finite training loss is exit status 3; a run stopped by SIGTERM or SIGINT
saves the round it was in and exits with status 75, and the same command resumes it
(aevb/training/preemption.py); a traceback is a bug. Compiled
programs are cached in ~/.cache/aevb/jax (--compilation_cache).
"""

import datetime
import gc
import importlib.util
import inspect
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Run directory; default: a fresh runs/<name>-<time>.")


class _SweepNameParser(flags.ArgumentParser):
    """A sweep flag's value: given alone (absl passes 'true'), the file's default sweep '';
    given as --flag=NAME, NAME; absent or --noflag, None."""

    def parse(self, argument: str) -> str | None:
        text = str(argument).strip()
        return {"true": "", "false": None}.get(text.lower(), text)

    def flag_type(self) -> str:
        return "sweep name"


def _define_sweep_flag(name: str, help_text: str) -> flags.FlagHolder:
    """A flag that takes an optional value: --name, --name=VALUE (absl's boolean kind)."""
    return flags.DEFINE_flag(flags.Flag(_SweepNameParser(), flags.ArgumentSerializer(), name,
                                        None, help_text, boolean=True))


_SWEEP = _define_sweep_flag(
    "sweep", "Run the trials of the config file's get_sweep(): --sweep its default sweep, "
    "--sweep=NAME the sweep get_sweep(NAME) names (e.g. --sweep=figures).")
_SWEEP_PRINT = _define_sweep_flag(
    "sweep_print", "Print one launch.py command per trial of the sweep (--sweep_print or "
    "--sweep_print=NAME, as --sweep); run none.")
_VECTORIZE = flags.DEFINE_bool("vectorize", True, "Sweeps: train trials that differ only in "
                               "seed or float hyperparameters together, as one program.")
_WORKERS = flags.DEFINE_integer(
    "workers", 0, "Sweeps: run the trials in this many processes, one per core, each "
    "vectorizable group split over them (a CPU option; python -m benchmarks.sweep measures it; "
    "on a GPU, N trials share it at once). "
    "-1: one per core on a CPU backend, none on accelerators. 0: one process.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run (jax.distributed.initialize). On a TPU pod "
    "slice or under SLURM the next three flags can stay unset.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", None, "Directory of JAX's persistent compilation cache, so that a "
    "rerun or resume does not compile again; default ~/.cache/aevb/jax, empty: off.")


def _get_sweep(name: str) -> list[dict]:
    """The list of override dicts from the config file's get_sweep(name) ('': its default
    sweep; a file whose get_sweep() takes no name has only that one)."""
    from aevb import sweeps

    path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
    spec = importlib.util.spec_from_file_location("_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise sweeps.SweepError(f"{path} defines no get_sweep()")
    if not name:
        return module.get_sweep()
    if not inspect.signature(module.get_sweep).parameters:
        raise sweeps.SweepError(f"--sweep={name}: {path} has one sweep and no named ones (its "
                                "get_sweep() takes no name); use --sweep alone")
    return module.get_sweep(name)


def _user_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _flag_error_message(error: BaseException, argv: list[str]) -> str | None:
    """The one-line message of a user's mistake on the command line, None for a bug."""
    from aevb.config.checks import UserError

    chain, e = [], error
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    user_errors = [e for e in chain if isinstance(e, UserError)]
    if user_errors:  # from the config file's get_config (a variant); the deepest is the cause
        return str(user_errors[-1]).strip().splitlines()[-1]
    for e in chain:
        if isinstance(e, (AttributeError, KeyError)):  # an override of a field that is not there
            text = str(e)
            suggestion = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', text)
            bad = suggestion.group(2) if suggestion else re.sub(r"\W", "", text.split("\\n")[0])
            flag = next((a.split("=")[0] for a in argv
                         if re.match(rf"--config\.([\w.]+\.)?{bad}([.=]|$)", a)), "--config.")
            hint = f"; did you mean {suggestion.group(1)}?" if suggestion else ""
            return f"{flag}: no such config field{hint}"
        if isinstance(e, OSError) and "Failed loading config file" in str(e):
            given = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
            path = given[-1].split(":")[0] if given else "(the file given)"
            return f"--config={path}: cannot load the config file ({e.strerror or 'no such file'})"
    if isinstance(error, flags.Error) and "Traceback" not in str(error):
        return str(error).strip().splitlines()[0]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flags parser, with a user's mistake as one line and exit status 2."""
    sys.argv = list(argv)  # ml_collections reads the --config.* overrides from sys.argv
    try:
        rest = flags.FLAGS(argv)
        if flags.FLAGS["config"].value is None:
            _user_error("--config is required, e.g. --config=experiments/vae.py")
        _CONFIG.value.get("experiment")  # a missing config file surfaces only when read
    except (flags.Error, AttributeError, KeyError, OSError, ValueError, TypeError) as e:
        message = _flag_error_message(e, list(argv))
        if message is None:
            raise
        _user_error(message)
    if len(rest) > 1:
        _user_error(f"unexpected arguments: {rest[1:]}; flags are --name=value")
    return rest


def cli(argv: list[str]) -> int:
    """Parses `argv` and runs it in this process; returns the exit status (for tests)."""
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)  # the overrides of the previous call's config
    if flags.FLAGS.is_parsed():
        flags.FLAGS.unparse_flags()
    from aevb.run import startup

    startup.begin()  # this call's start-up, not the test process's
    try:
        main(parse_flags(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def _run(config, workdir: str) -> None:
    """The command: print a sweep's commands, run a sweep, or run one config."""
    from aevb import regimes, sweeps
    from aevb.sweeps import workers

    if _SWEEP_PRINT.value is not None:
        config_arg = config_flags.get_config_filename(flags.FLAGS["config"])
        print("\n".join(sweeps.commands(config_arg, workdir,
                                        _get_sweep(_SWEEP_PRINT.value), config)))
    elif _SWEEP.value is not None:
        num_workers = _WORKERS.value if _WORKERS.value >= 0 else workers.auto_workers()
        sweeps.run_sweep(config, _get_sweep(_SWEEP.value), workdir,
                         vectorize=_VECTORIZE.value, num_workers=num_workers)
    else:
        regimes.run(config, workdir)


def main(argv: list[str]) -> None:
    del argv  # parse_flags refused any stray argument
    from aevb.config import checks
    from aevb.run import compile_cache, parallel, startup
    from aevb.training import preemption

    startup.mark("imports")  # the interpreter, the packages, the experiment file, the flags

    if _DISTRIBUTED.value:
        parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                        _PROCESS_ID.value)
    if not flags.FLAGS["verbosity"].present:  # library INFO chatter (Orbax) off by default
        logging.set_verbosity(logging.WARNING)
    cache = _COMPILATION_CACHE.value
    if cache != "":
        compile_cache.enable(os.path.expanduser(cache or compile_cache.default_directory()))
    import jax

    jax.devices()  # the backend starts here (CUDA's or the TPU's initialization), not later
    startup.mark("backend")
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join(
        "runs", f"{config.experiment}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    try:
        with preemption.WATCH.installed():  # SIGTERM, SIGINT: stop after a round, saved
            _run(config, workdir)
    except checks.UserError as e:
        _user_error(str(e))
    except checks.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except checks.Preempted as e:
        print(f"preempted: {e}", flush=True)
        sys.exit(preemption.EXIT_STATUS)


def _program(argv: list[str]) -> None:
    """`main` as a program: Python's cyclic garbage collector is off while the packages are
    imported (a third of a second here: their objects live as long as the process) and, at
    the end, every object is frozen, so that the interpreter's final collection does not
    walk JAX's (another third). A test's `cli` keeps the collector as it is."""
    gc.freeze()  # what the imports made: kept for good, never scanned again
    gc.enable()
    try:
        main(argv)
    finally:
        gc.freeze()


if __name__ == "__main__":
    gc.disable()
    from aevb.run import startup

    startup.begin(startup.process_start())
    app.run(_program, flags_parser=parse_flags)
