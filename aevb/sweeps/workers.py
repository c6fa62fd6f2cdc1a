"""Sweeps in worker processes: on a CPU, one process per core, each taking trials in turn.

XLA does not pin a CPU device's threads to cores, and one small model cannot keep several
cores busy: its steps are too short to split well. So on a CPU a sweep's trials run in
`num_workers` processes instead, each pinned to one core (`os.sched_setaffinity`) with XLA
and the BLAS libraries single-threaded, taking units of work from one queue until it is
empty. A unit is one trial (an ordinary `router.run` in its own workdir, with its own
lock, checkpoints and resume) or a share of a vectorizable group, trained as one vmapped
program (`aevb/regimes/vectorized.py`): the router splits each group over the workers. A unit's
console lines go to `<root>/logs/<first trial>[+n].log`, and the sweep prints one line per
finished unit. Workers share the persistent compilation cache
(`aevb/run/compile_cache.py`), so trials of one shape compile once. On accelerators the router
keeps vmapped trials (`aevb/regimes/vectorized.py`) instead; trials that cannot be vmapped
(the few-label regimes) can still share one GPU through `--workers=N`, N processes on it at
once (the `long` sweep of experiments/semisupervised.py ran 8 on one H200).

The worker count: `--workers` on `launch.py` (default 0: one process; -1, `auto_workers`:
one per core this process may use, on a single-process CPU backend). On the 2-core CPU
of the README, workers came within a few percent of the best arrangement but never beat
it (benchmarks/sweep.py: a VAE sweep ties sequential, a small sparse model's sweep is
fastest vmapped in one process), so they are an option, not the default.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from aevb.config.checks import Preempted
from aevb.training.preemption import WATCH

# Each worker: XLA and BLAS single-threaded on its one core and, where the processes share
# an accelerator, no worker taking 75% of its memory up front (JAX's default).
WORKER_ENVIRONMENT = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1",
                      "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                      "MKL_NUM_THREADS": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def auto_workers() -> int:
    """The cores this process may use, on a single-process CPU backend; else 0."""
    import jax

    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return 0
    return len(os.sched_getaffinity(0))


def _worker(core: int, todo, done, root: str, cache_dir: str | None,
            run: Callable[[list, str], Any]) -> None:
    """Runs units of trials from `todo` with `run(unit, root)` until it is empty; puts
    (unit name, summaries or error, seconds) on `done`."""
    os.sched_setaffinity(0, {core})
    from aevb.run import compile_cache

    if cache_dir:
        compile_cache.enable(cache_dir)
    with WATCH.installed():
        while not WATCH.requested and (item := todo.get()) is not None:  # None: all taken
            _run_unit(item, done, root, run)


def _run_unit(item: tuple[str, list], done, root: str, run: Callable[[list, str], Any]) -> None:
    """Runs one unit of `todo` and puts (its name, summaries or error, seconds) on `done`."""
    name, unit_json = item
    unit = [(trial, _config_from_json(config)) for trial, config in unit_json]
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    t0 = time.perf_counter()
    with open(os.path.join(root, "logs", f"{name}.log"), "w") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            outcome: Any = run(unit, root)
        except Exception as e:  # noqa: BLE001  reported by the parent, with its type
            outcome = e
    try:
        pickle.dumps(outcome)
    except Exception:  # noqa: BLE001  an error that cannot cross processes as itself
        outcome = RuntimeError(f"{type(outcome).__name__}: {outcome}")
    done.put((name, outcome, time.perf_counter() - t0))


def _config_from_json(text: str):
    """A ConfigDict from `config.to_json()`, with lists back to tuples as configs hold them."""
    import json

    import ml_collections

    def tuples(value):
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return tuple(value) if isinstance(value, list) else value

    return ml_collections.ConfigDict(tuples(json.loads(text)))


def _next_result(done, workers) -> tuple[str, Any, float]:
    """The next finished trial; RuntimeError if every worker died with trials unfinished."""
    while True:
        try:
            return done.get(timeout=1.0)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers) and done.empty():
                codes = [worker.exitcode for worker in workers]
                raise RuntimeError(f"every sweep worker ended (exit codes {codes}) with "
                                   "trials unfinished") from None


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` set in os.environ inside the block (a spawned process inherits them);
    XLA_FLAGS added to the flags already set, which stay."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update({k: f"{saved[k] or ''} {v}".strip() if k == "XLA_FLAGS" else v
                       for k, v in variables.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def run_units(units: Sequence[Sequence[tuple[str, Any]]], root: str, num_workers: int,
              run: Callable[[list, str], Any]) -> None:
    """Runs the units of trials (lists of (name, config): one trial, or trials to train as
    one vmapped program) with `run(unit, root)` in `num_workers` processes, one per core;
    raises the first unit's error (its own type: a UserError stays one) after all ended."""
    import jax

    if not units:
        return
    cache_dir = jax.config.jax_compilation_cache_dir  # the workers share this process's
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: XLA flags apply
    todo, done = context.Queue(), context.Queue()
    names = []
    for unit in units:
        names.append(unit[0][0] + (f"+{len(unit) - 1}" if len(unit) > 1 else ""))
        todo.put((names[-1], [(trial, config.to_json()) for trial, config in unit]))
    cores = sorted(os.sched_getaffinity(0))
    workers = [context.Process(target=_worker, args=(cores[i % len(cores)], todo, done,
                                                     root, cache_dir, run), daemon=True)
               for i in range(min(num_workers, len(units)))]
    for _ in workers:
        todo.put(None)  # one end mark per worker, after every unit
    print(f"{sum(map(len, units))} trials in {len(units)} units ({', '.join(names)}) on "
          f"{len(workers)} worker processes, one per core (console lines in "
          f"{os.path.join(root, 'logs')})", flush=True)
    with _environment(WORKER_ENVIRONMENT):  # set before the worker imports JAX
        for worker in workers:
            worker.start()
    errors: list[BaseException] = []
    finished, preempted = 0, False
    with WATCH.installed(forward_to=lambda: [w.pid for w in workers if w.is_alive()]):
        for _ in units:
            try:
                name, outcome, seconds = _next_result(done, workers)
            except RuntimeError:
                if preempted or WATCH.requested:  # the workers stopped, units untaken
                    break
                raise
            if isinstance(outcome, Preempted):
                preempted = True
                print(f"== {name}: {outcome}", flush=True)
            elif isinstance(outcome, BaseException):
                errors.append(outcome)
                print(f"== {name}: failed after {seconds:.1f} s: {outcome}", flush=True)
            else:
                finished += 1
                print(f"== {name}: done in {seconds:.1f} s", flush=True)
        for worker in workers:
            worker.join()
    if errors:
        raise errors[0]
    if finished < len(units):
        raise Preempted(f"{WATCH.signal_name}: the sweep's workers stopped with "
                        f"{len(units) - finished} of {len(units)} units unfinished; the same "
                        "command runs them")
