"""python -m aevb.results: runs the rows of the results page that have no record yet, then
writes the page and the README's headline numbers from the records.

    python -m aevb.results                        # full: docs/results.md and README.md
    python -m aevb.results --rows=vae,stacked-deep  # some rows (keys or names)
    python -m aevb.results --page_only            # rewrite from the records, run nothing
    python -m aevb.results --quick                # every row's runlocal variant, in
                                                  # runs/results-quick (not docs/)
    python -m aevb.results --quick --flags="--config.data.dir=DIR"  # flags for every row

Full mode keeps the records in docs/results/records/ and the pictures in
docs/results/figures/, both committed: the page can be rebuilt on any machine, and a row
is run again only when its command changes. A record is matched by its command alone: after
changing an experiment file's defaults, delete the records of its rows
(docs/results/records/KEY.json) to measure them again. Rows run in `--root` (default
runs/results); an interrupted row (Ctrl-C, SIGTERM: exit status 75) resumes there.

A table (`TABLES` in aevb/results/rows.py, e.g. --rows=semisupervised-protocol) is a named
sweep of hours: it runs only when --rows names it, never in quick mode, resumes like a row,
and keeps each finished trial's summary in docs/results/records/<key>/, so that its table
on the page grows across sittings. `--table_flags` adds launch.py flags that change how a
sweep runs, not what (`--table_flags=--workers=8`: 8 processes sharing one GPU).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from aevb.results import page, runner
from aevb.results.rows import ROWS, TABLES


def _select(names: str) -> tuple[list, list]:
    """(the rows, the tables) that `--rows` names (without it: every row, no table)."""
    if not names:
        return list(ROWS), []
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [*(r.key for r in ROWS), *(t.key for t in TABLES)]
    picked = [r for r in ROWS if r.key in wanted or (not r.tag and r.name in wanted)]
    unknown = [n for n in wanted if n not in known and n not in {r.name for r in ROWS}]
    if unknown:
        raise ValueError(f"--rows: no row {', '.join(unknown)}; the rows: "
                         f"{', '.join(known)}")
    return picked, [t for t in TABLES if t.key in wanted]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m aevb.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="each row's runlocal variant; the page goes to --root")
    parser.add_argument("--rows", default="", help="row keys or names, comma-separated")
    parser.add_argument("--root", default="", help="where rows run (runs/results, "
                        "runs/results-quick)")
    parser.add_argument("--flags", default="", help="--config flags added to every row")
    parser.add_argument("--table_flags", default="", help="launch.py flags for the tables' "
                        "sweeps, how they run, not what (e.g. --workers=8)")
    parser.add_argument("--page_only", action="store_true", help="run no row")
    args = parser.parse_args(list(argv))
    try:
        rows, tables = _select(args.rows)
        if any(f.startswith("--config") for f in shlex.split(args.table_flags)):
            raise ValueError("--table_flags: launch.py flags of how a sweep runs "
                             "(--workers, --compilation_cache), not --config ones, which "
                             "would change the kept trials' meaning")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = args.root or os.path.join("runs", "results-quick" if args.quick else "results")
    out = root if args.quick else os.path.join(runner.REPO, "docs")
    records_dir = os.path.join(out, "results", "records")
    figures_dir = os.path.join(out, "results", "figures")
    if not args.page_only:
        try:
            runner.run_rows(rows, root, records_dir, figures_dir, args.quick,
                            shlex.split(args.flags))
            for table in [] if args.quick else tables:  # sweeps of hours: never quick
                print(f"{table.key}: {table.command()}", flush=True)
                runner.run_table(table, root, records_dir, shlex.split(args.table_flags))
        except runner.RowError as e:
            print(f"error: {e}", file=sys.stderr)
            return runner.PREEMPTED if e.status == runner.PREEMPTED else 1
    write(out, args.quick)
    return 0


def write(out: str, quick: bool) -> tuple[str, str]:
    """Writes `out`/results.md from the records under `out`/results/ and the README's
    block: README.md's (full mode) or `out`/README-block.md (quick). Returns both paths."""
    records_dir = os.path.join(out, "results", "records")
    page_path = os.path.join(out, "results.md")
    with open(page_path, "w") as f:
        f.write(runner.page_from_records(records_dir, quick))
    block = runner.readme_block_from_records(records_dir)
    readme = os.path.join(runner.REPO, "README.md") if not quick else os.path.join(
        out, "README-block.md")
    if quick:
        text = block + "\n"
    else:
        with open(readme) as f:
            text = page.replace_block(f.read(), block)
    with open(readme, "w") as f:
        f.write(text)
    print(f"wrote {page_path} and {readme}", flush=True)
    return page_path, readme


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
