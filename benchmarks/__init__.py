"""Benchmarks: measurements and reports, not tests. Each runs as a module from the
repository root, e.g. `python -m benchmarks.throughput --config=experiments/vae.py`; they
set up runs through the library (`aevb.regimes.joint.setup`, `aevb.regimes.run`)."""
