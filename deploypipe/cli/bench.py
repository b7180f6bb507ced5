"""``deploypipe bench``: time a benchmark suite, save it as a baseline, and gate latency
regressions against a baseline (exit 0 passed, 1 regression, 2 usage error)."""
from __future__ import annotations

import argparse

from .args import add_json_out

DEFAULT_BASELINES = "benchmarks/baselines"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="time a benchmark suite and fail on latency regressions beyond the noise",
        description="Export and build every case of a suite (TOML), time them in interleaved "
        "rounds with a fixed reference model, print median/p90/p99, CV and throughput per "
        "case, and compare with a baseline taken on the same target and hardware: a case "
        "fails only when it is slower than the suite's threshold beyond the noise measured in "
        "both runs; a case too noisy to judge is reported as inconclusive.")
    p.add_argument("suite", help="the suite's TOML file (see benchmarks/suites/)")
    p.add_argument("--target", metavar="PROFILE", help="target profile name or TOML path "
                   "(default: the suite's first target)")
    p.add_argument("--save", metavar="NAME", help="save this run as baseline NAME for this "
                   "target and machine")
    p.add_argument("--compare", metavar="BASELINE", help="gate against BASELINE: a name saved "
                   "with --save on this machine, or a baseline JSON file")
    p.add_argument("--baselines", metavar="DIR", default=DEFAULT_BASELINES,
                   help=f"the baselines folder, DIR/<profile>/<fingerprint>/<name>.json "
                   f"(default: {DEFAULT_BASELINES})")
    p.add_argument("--allow-other-hardware", action="store_true",
                   help="compare with a baseline from another machine (with a warning) "
                   "instead of refusing")
    p.add_argument("--strict", action="store_true",
                   help="also fail (exit 1) when a case is too noisy to judge")
    add_json_out(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import BaselineStore, compare_runs, load_suite, resolve_target, run_suite
    from ..bench.baselines import check_name
    from ..bench.bench_summary import baseline_line, header_lines, notes, summary_line, table_lines
    from ..utils.files import check_output_path, probe_writable, write_json

    suite = load_suite(args.suite)
    target = resolve_target(suite, args.target)
    store = BaselineStore(args.baselines)
    if args.save:
        check_name(args.save)
        probe_writable(args.baselines, args.baselines)  # before the suite is timed, not after
    if args.json:
        check_output_path(args.json, args.suite)
    baseline, source = _baseline(args, store, target)  # refused before timing, not after
    result = run_suite(suite, target)
    comparison = compare_runs(baseline, result, suite.gate) if baseline else None
    head = header_lines(result) + ([baseline_line(baseline, source)] if baseline else [])
    for line in [*head, *table_lines(result, comparison), *notes(comparison)]:
        print(line)
    if args.save:
        print(f"saved baseline {store.save(result, args.save)}")
    if args.json:
        write_json(args.json, {"run": result.to_dict(), "baseline": args.compare,
                               "comparison": comparison.to_dict() if comparison else None,
                               "passed": comparison is None or comparison.passed(strict=args.strict)})
        if args.json != "-":  # the JSON itself is on stdout
            print(f"wrote {args.json}")
    print(summary_line(comparison, result, strict=args.strict))
    return 0 if comparison is None or comparison.passed(strict=args.strict) else 1


def _baseline(args: argparse.Namespace, store, target):
    """The baseline to compare with and its file, checked against this target and machine,
    or (None, None)."""
    if not args.compare:
        return None, None
    from ..bench import load_run
    from ..bench.baselines import check_same_hardware, check_same_target
    from ..measure.fingerprint import hardware_fingerprint
    from ..utils.log import get_logger

    here = hardware_fingerprint()
    path = store.find(args.compare, target.name, here,
                      allow_other_hardware=args.allow_other_hardware)
    baseline = load_run(path)
    check_same_target(baseline.target, target.to_dict())
    warning = check_same_hardware(baseline.fingerprint, here, allow=args.allow_other_hardware)
    if warning:
        get_logger("bench").warning("warning: %s", warning)
    return baseline, str(path)
