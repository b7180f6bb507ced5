#!/usr/bin/env python3
"""Fuzz the channel surgery with many random graphs (issue 11).

    python tools/fuzz.py --count 10000              # seeds 0..9999
    python tools/fuzz.py --count 2000 --start 50000 # another range

Every seed is recorded; a failing graph is shrunk to a minimal spec and appended to
tests/graph/fuzz_regressions.json, which the default test tier replays. A summary goes to
benchmarks/results/fuzz.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--max-blocks", type=int, default=6)
    p.add_argument("--regressions", default=str(ROOT / "tests" / "graph" / "fuzz_regressions.json"))
    p.add_argument("--summary", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    args = p.parse_args()

    from deploypipe.testing.fuzz import fails, fuzz, minimise
    from deploypipe.testing.graphs import BLOCKS

    def progress(seed, result):
        if result.graphs % 500 == 0:
            print(f"{result.graphs} graphs, {len(result.failures)} failures", flush=True)

    seeds = range(args.start, args.start + args.count)
    result = fuzz(seeds, progress=progress, max_blocks=args.max_blocks)
    path = Path(args.regressions)
    stored = json.loads(path.read_text()) if path.exists() else []
    for f in result.failures:
        small = minimise(f.spec, f.drop_seed)
        stored.append({"seed": f.seed, "drop_seed": f.drop_seed, "error": fails(small, f.drop_seed) or f.error,
                       "spec": small, "found": time.strftime("%Y-%m-%d")})
    if result.failures:
        path.write_text(json.dumps(stored, indent=1) + "\n")
    summary = {"graphs": result.graphs, "seeds": [args.start, args.start + args.count - 1],
               "failures": len(result.failures), "failing_seeds": [f.seed for f in result.failures],
               "seconds": round(result.seconds, 1), "prunable_groups": result.prunable_groups,
               "frozen_groups": result.frozen_groups, "max_blocks": args.max_blocks, "blocks": list(BLOCKS),
               "command": " ".join(["tools/fuzz.py", *sys.argv[1:]])}
    Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
