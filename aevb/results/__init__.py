"""The results page: the measured rows (`rows.py`), running them (`runner.py`), and the page
and README block written from their records (`page.py`). Command: `python -m aevb.results`
(`__main__.py`)."""

from aevb.results.page import (
    BEGIN,
    END,
    current_block,
    render_page,
    render_readme_block,
    replace_block,
)
from aevb.results.rows import ROWS, TABLES, Row, Table, derived
from aevb.results.runner import RowError, load_records, run_row, run_rows

__all__ = [
    "BEGIN",
    "END",
    "ROWS",
    "TABLES",
    "Row",
    "RowError",
    "Table",
    "current_block",
    "derived",
    "load_records",
    "render_page",
    "render_readme_block",
    "replace_block",
    "run_row",
    "run_rows",
]
