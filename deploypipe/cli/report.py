"""``deploypipe report RUN_DIR``: rebuild ``report.html`` from a run's ``report.json``."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="rebuild a build's report.html from its report.json",
        description="Write RUN_DIR/report.html again from RUN_DIR/report.json and the files beside it "
        "(the latency table): one self-contained page with the summary and the plots.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the output directory of `deploypipe build`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_html_report

    path = write_html_report(args.run_dir)
    print(f"wrote {path.resolve()}")
    return 0
