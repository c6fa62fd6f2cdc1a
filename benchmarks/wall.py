"""Where the default command's wall time goes, with a cold and a warm compilation cache
(a benchmark, not a test).

    python -m benchmarks.wall [launch.py flags, default: --config=experiments/vae.py]

Runs `launch.py` twice in fresh processes and fresh workdirs, sharing one new compilation
cache: first cold (empty), then warm (filled by the first run). Reads each run's `time:`
line (`aevb/training/loop.py`: compilation, training, evaluation, checkpoints, pictures) and
counts the rest of the wall time as start-up; the line's own start-up split (imports,
backend, data, setup: `aevb/run/startup.py`) is printed beside it.
Prints both splits and, last, `warm_overhead_fraction=<float>`: the part of the warm
run's wall time that is neither training steps nor evaluation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

from aevb.training.loop import TIME_PARTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(flags: list[str], workdir: str, cache: str) -> tuple[float, dict[str, float]]:
    """(wall seconds, the run's time parts) of one launch.py process."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "launch.py", *flags, f"--workdir={workdir}",
                          f"--compilation_cache={cache}"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    line = next(line for line in out.splitlines() if line.startswith("time: "))
    parts = {name: float(s) for name, s in re.findall(r"(\w+) ([\d.]+) s", line)
             if name in TIME_PARTS}
    own = re.search(r"start-up [\d.]+ s \(([^)]*)\)", line)
    parts["own start-up"] = own.group(1) if own else ""
    return wall, parts


def main() -> None:
    flags = sys.argv[1:] or ["--config=experiments/vae.py"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {way: run(flags, os.path.join(tmp, way), os.path.join(tmp, "cache"))
                   for way in ("cold", "warm")}
    for way, (wall, parts) in results.items():
        own = parts.pop("own start-up")
        startup = wall - sum(parts.values())
        split = ", ".join(f"{name} {s:.1f} s ({s / wall:.1%})" for name, s in
                          [("start-up", startup), *parts.items()])
        print(f"{way} cache: wall {wall:.1f} s = {split}")
        print(f"  the run's own count of its start-up: {own} (the rest of start-up here is "
              "the process's exit)")
    wall, parts = results["warm"]
    print(f"warm_overhead_fraction={(wall - parts['training'] - parts['evaluation']) / wall:.3f}")


if __name__ == "__main__":
    main()
