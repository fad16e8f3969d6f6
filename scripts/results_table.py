#!/usr/bin/env python
"""Collect every results.json under RUNS_DIR into a markdown table against the paper
(Mega, Mega-chunk, Megalodon, S4), with the model each run trained: mean ± std over the seeds of
each setting, n, runs stuck at chance.
Smoke or size-limited runs are listed but left out of the comparison unless
--include-limited. Draws learning curves from the csv logs.

    python scripts/results_table.py outputs
    python scripts/results_table.py outputs --out table.md --plot curves.png --include-limited
    python scripts/results_table.py outputs/lite --export docs/results     # then:
    python scripts/results_table.py docs/results --out docs/RESULTS.md --notes docs/results/NOTES.md

--export copies each full-size run's results.json, curves.png, csv logs and overrides to
DIR/<preset>/seed<N>/ (the committed record) and builds the table from there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lra_mega.results.curves import plot_curves, plot_run_curves
from lra_mega.results.report import collect, export_runs, markdown_table
from out_paths import require_writable


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs_dir", type=Path)
    p.add_argument("--out", type=Path, help="markdown file (default RUNS_DIR/results.md)")
    p.add_argument("--plot", type=Path, help="PNG file (default RUNS_DIR/curves.png)")
    p.add_argument("--include-limited", action="store_true",
                   help="compare smoke / size-limited runs with the paper too")
    p.add_argument("--export", type=Path, metavar="DIR",
                   help="copy each full-size run's record to DIR/<preset>/seed<N>/ and tabulate DIR")
    p.add_argument("--notes", type=Path, help="markdown put above the table (e.g. what the runs show)")
    p.add_argument("--redraw-curves", action="store_true",
                   help="re-draw each run's own curves.png from its csv logs (after a fix in lra_mega.results.curves)")
    args = p.parse_args(argv)
    for flag, path, is_file in (("--out", args.out, True), ("--plot", args.plot, True),
                                ("--export", args.export, False)):
        if path is not None:
            require_writable("results_table", flag, path, is_file=is_file)
    if not args.runs_dir.is_dir():
        print(f"results_table: error: {args.runs_dir} is not a directory; give the directory "
              "holding the runs (e.g. outputs)", file=sys.stderr)
        return 1
    results = collect(args.runs_dir)
    if not results:
        print(f"results_table: error: no results.json under {args.runs_dir}", file=sys.stderr)
        return 1
    if args.export:
        kept = [r for r in results if args.include_limited or not r.get("limited")]
        for target in export_runs(kept, args.export):
            print(f"exported {target}")
        args.runs_dir, results = args.export, collect(args.export)
    if args.redraw_curves:
        for r in results:
            print(f"redrawn {plot_run_curves(r['_dir'], r)}")
    if args.notes and not args.notes.is_file():
        print(f"results_table: error: --notes {args.notes} is not a file", file=sys.stderr)
        return 1
    table = markdown_table(results, include_limited=args.include_limited)
    header = ("<!-- written by: python scripts/results_table.py "
              + " ".join(sys.argv[1:] if argv is None else argv) + " -->\n\n")
    notes = args.notes.read_text().rstrip() + "\n\n" if args.notes else ""
    out = args.out or args.runs_dir / "results.md"
    out.write_text(header + notes + table)
    png = plot_curves(results, args.plot or args.runs_dir / "curves.png")
    print(table, end="")
    print(f"\n{len(results)} runs -> {out}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
