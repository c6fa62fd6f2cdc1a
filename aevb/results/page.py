"""The results page and the README's headline numbers, written from the rows' records.

Both are pure functions of the records (`runner.load_records`): the page (`render_page`) has a
table of every row, its figures and learning curves; the README's block (`render_readme_block`,
between `BEGIN` and `END`) has the rows marked `readme` and each table's `headline`. So the
page and the README cannot disagree unless one was edited by hand, which
`tests/test_results.py` catches.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from aevb.results.rows import Row, Table, derived, put

BEGIN = "<!-- results:begin (written by python -m aevb.results; do not edit) -->"
END = "<!-- results:end -->"
Records = dict[str, dict[str, Any]]


def result_text(row: Row, record: dict[str, Any] | None) -> str:
    """The row's result from its record's summary, or why there is none."""
    if record is None:
        return "not run yet"
    try:
        return row.result.format(**derived(record["summary"]))
    except KeyError as e:
        return f"its summary has no {e.args[0]}"


def wall_text(record: dict[str, Any] | None) -> str:
    """'49 s', '16 min', '1 h 15 min' ('' without a record; '(last sitting)' if resumed)."""
    if record is None:
        return ""
    s = round(record["wall_seconds"])
    text = f"{s} s" if s < 600 else f"{s // 60} min" if s < 3600 else (
        f"{s // 3600} h {s % 3600 // 60} min")
    return text + (" (its last sitting)" if record.get("resumed") else "")


def _table(rows: Sequence[Row], records: Records, quick: bool) -> list[str]:
    lines = ["| run | command | result | published | wall | machine, date |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        record = records.get(row.key)
        command = record["command"] if record else row.command(quick)
        where = f"{record['machine']}, {record['date']}" if record else ""
        lines.append(f"| `{row.key}` | `{command}` | {result_text(row, record)} | "
                     f"{row.anchor} | {wall_text(record)} | {where} |")
    return lines


def _figures(rows: Sequence[Row], records: Records, link: str) -> list[str]:
    lines = []
    for row in rows:
        names = [*row.figures, *(["curves.png"] if row.curves else [])]
        if row.key not in records or not names:
            continue
        lines += [f"### `{row.key}`", ""]
        lines += [f"![{row.key}: {n[:-4].replace('_', ' ')}]({link}/{row.key}-{n})"
                  for n in names]
        lines.append("")
    return lines


def shown_config(table: Table, config: dict[str, Any], summary: dict[str, Any]
                 ) -> dict[str, Any]:
    """A kept trial's config as its table shows it: '–' for each field of
    `table.shown_when` whose setting acted on nothing in this trial (its summary lacks the
    evidence field), so that a row of M2 on the pixels does not read as chosen by M1's
    probe on a graph of 30, 20 or 10 neighbours."""
    config = copy.deepcopy(config)
    for field, evidence in table.shown_when:
        if evidence not in summary:
            put(config, field, "–")
    return config


def render_table(table: Table, trials: Sequence[dict[str, Any]], sittings: dict[str, Any]
                 ) -> list[str]:
    """A table's section: its command, anchor and sittings, then a line per group of its
    kept trials (`aevb.sweeps.report.table`: mean ± sample std over the group's trials)."""
    from aevb.sweeps.report import table as grouped

    head = [f"## {table.title}", "",
            (f"`{table.command()}`, resumable; each finished trial's summary is kept in "
             f"`results/records/{table.key}/` (the table grows across sittings). "
             f"Published: {table.anchor}."), ""]
    if not trials:
        return [*head, "Not run yet.", ""]
    runs = [(t["trial"], shown_config(table, t["config"], t["summary"]), derived(t["summary"]))
            for t in trials]
    fields = [f for f in table.fields if any(f in s for _, _, s in runs)]
    spent = sum(s["wall_seconds"] for s in sittings.get("sittings", []))
    where = sorted({f"{t['machine']}, {t['date']}" for t in trials})
    return [*head, grouped(runs, (table.columns_by, *table.rows_by), fields,
                           fmt=table.fmt).rstrip(), "",
            (f"{len(trials)} trials kept; the sweep command's wall time, summed over its "
             f"sittings ({len(sittings.get('sittings', []))}): {spent / 3600:.2f} h. "
             f"Machines and dates: {'; '.join(where)}."), ""]


def render_page(rows: Sequence[Row], records: Records, figures_link: str, quick: bool = False,
                tables: Sequence[str] = ()) -> str:
    """docs/results.md: every row with its command, result, anchor, wall time, machine and
    date; the `tables` (lines of `render_table`); then the pictures and learning curves of
    the rows that have them."""
    mode = " in quick mode (each experiment's `runlocal` variant)" if quick else ""
    return "\n".join([
        "# Results", "",
        (f"Written by `python -m aevb.results`{mode} from the records beside this page, "
         "one per row: do not edit it, run the command again (it runs only the rows without "
         "a record, and resumes an interrupted one; `--rows=KEY,...` runs some). Each row "
         "is the command shown, on Fashion-MNIST unless it says otherwise, with the nearest "
         "published figure and its source; wall time is the command's, start-up to exit. "
         "The README's headline numbers are the rows of the experiment files' defaults, "
         "written there by the same command. Semi-supervised figures: "
         "[semi-supervised](semisupervised.md)."), "",
        *_table(rows, records, quick), "",
        *tables,
        "## Figures", "",
        ("Pictures from the rows' workdirs; learning curves: the training −ELBO each epoch "
         "(during a KL warm-up, at weight 1) and the validation (or test) −ELBO at each "
         "evaluation."), "",
        *_figures(rows, records, figures_link)]).rstrip() + "\n"


def headline_text(table: Table, trials: Sequence[dict[str, Any]]) -> str:
    """The table's README line: for each of its `headline` groups, the mean ± sample std
    of `headline_field` over the kept trials in that group, and how many there are."""
    from aevb.sweeps.report import config_value, mean_std

    parts = []
    for label, where in table.headline:
        chosen = [derived(t["summary"]) for t in trials
                  if all(config_value(t["config"], f) == v for f, v in where)]
        values = [s[table.headline_field] for s in chosen if table.headline_field in s]
        if values:
            mean, std, n = mean_std(values)
            spread = f" ± {std:{table.fmt}}" if n > 1 else ""
            parts.append(f"{label} {mean:{table.fmt}}{spread} ({n} draw{'s' * (n > 1)})")
    return "; ".join(parts) or "not run yet"


def render_readme_block(rows: Sequence[Row], records: Records, page_link: str,
                        tables: Sequence[tuple[Table, Sequence[dict[str, Any]], dict[str, Any]]]
                        = ()) -> str:
    """The README's headline numbers: one row per experiment file, then one per table
    (its kept trials and sittings as `runner.load_table` gives them), between the markers."""
    lines = [BEGIN, "", "| file | headline (the command of [results](" + page_link + ")) | "
             "published anchor | wall |", "|---|---|---|---|"]
    for row in rows:
        if row.readme:
            record = records.get(row.key)
            lines.append(f"| `{row.file}.py` | `{row.key}`: {result_text(row, record)} | "
                         f"{row.anchor} | {wall_text(record)} |")
    for table, trials, sittings in tables:
        if table.headline:
            hours = sum(s["wall_seconds"] for s in sittings.get("sittings", [])) / 3600
            variant = f"`:{table.variant}` " if table.variant else ""
            lines.append(f"| `{table.file}.py` | {variant}`--sweep={table.sweep}`, test "
                         "error (%): "
                         f"{headline_text(table, trials)} | {table.anchor} | "
                         f"{hours:.1f} h |")
    return "\n".join([*lines, "", END])


def current_block(text: str) -> str:
    """The block between the markers of `text` (ValueError if they are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN!r} ... {END!r} block")
    return text[start:end + len(END)]


def replace_block(text: str, block: str) -> str:
    """`text` with its block between the markers replaced by `block`."""
    return text.replace(current_block(text), block)
