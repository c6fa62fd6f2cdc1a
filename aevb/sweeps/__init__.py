"""Sweeps: trial lists (`trials.py`), running them (`runner.py`, `workers.py`), and the
grouped report of their summaries (`report.py`)."""

from aevb.sweeps.runner import group_for_vectorizing, grouping_note, run_sweep, run_unit
from aevb.sweeps.trials import (
                                Overrides,
                                SweepError,
                                apply_overrides,
                                commands,
                                make_trials,
                                named,
                                product,
                                trial_name,
                                write_tables,
                                zip_,
)

__all__ = ["Overrides", "SweepError", "apply_overrides", "commands", "group_for_vectorizing",
           "grouping_note", "make_trials", "named", "product", "run_sweep", "run_unit",
           "trial_name", "write_tables", "zip_"]
