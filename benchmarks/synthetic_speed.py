"""Time to generate the embedded synthetic data set (`easrec.data.synthetic_dataset()` with its defaults).

The goal is under 2 s on the project's machine; a wall-clock bound depends on the machine's load, so
it is measured here, not asserted in the tests. Prints the median and range of `--repeats` runs and
writes benchmarks/results/synthetic_speed.json.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/synthetic_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from easrec.data import synthetic_dataset
from easrec.io import atomic_write_json

GOAL_S = 2.0


def main() -> None:
    """Time the generator `--repeats` times and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "synthetic_speed.json"))
    args = parser.parse_args()
    seconds = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        ds = synthetic_dataset()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    result = {"seconds": seconds, "median_s": median, "goal_s": GOAL_S, "met": median < GOAL_S,
              "users": len(ds.sequences), "items": ds.n_items, "load_average": os.getloadavg()[0],
              "machine": platform.processor() or platform.machine()}
    atomic_write_json(args.out, result)
    print(f"synthetic_dataset(): median {median:.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}) over "
          f"{len(seconds)} runs; goal < {GOAL_S} s: {'met' if result['met'] else 'NOT met'}; load {result['load_average']:.1f}")


if __name__ == "__main__":
    main()
