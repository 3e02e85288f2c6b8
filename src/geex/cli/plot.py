"""``geex plot RUN_DIR``: a run's training curves as PNGs and a self-contained report.html."""

from __future__ import annotations

import argparse
import sys
import warnings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a training run's curves and an HTML report",
        description="Read RUN_DIR/metrics.jsonl (written by `geex train`, also while it runs) "
        "and draw loss.png, throughput.png, optimizer.png and report.html, which holds the "
        "same images inline and a summary table.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a `geex train --out` folder")
    parser.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/plots)")
    parser.set_defaults(handler=_plot)


def _plot(args: argparse.Namespace) -> int:
    from geex.train.plot import MetricsWarning, plot_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricsWarning)
        paths = plot_run(args.run_dir, args.out)
    for warning in caught:
        if issubclass(warning.category, MetricsWarning):
            print(f"geex plot: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    for path in paths:
        print(path)
    return 0
