"""How long `newsletter --help` takes to start, wall and CPU (the goal: < 0.3 s).

    .venv/bin/python benchmarks/startup.py [--runs 10]

Runs it as a user would (`python -m newsletter --help`, a fresh interpreter each time) and prints
the median, min and max wall time, the median CPU time (user + system, less sensitive to other
load on the machine) and the bare interpreter's start-up for comparison. tests/cli/test_startup.py
checks what `--help` imports (a count, not a time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _run(argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(runs: int = 10) -> dict[str, float]:
    help_argv = [sys.executable, "-m", "newsletter", "--help"]
    bare_argv = [sys.executable, "-c", "pass"]
    _run(help_argv)  # warm the file cache and .pyc files
    helps = [_run(help_argv) for _ in range(runs)]
    bares = [_run(bare_argv) for _ in range(runs)]
    walls = [w for w, _ in helps]
    return {
        "runs": runs,
        "load_average": os.getloadavg()[0],
        "help_wall_median_s": statistics.median(walls),
        "help_wall_min_s": min(walls),
        "help_wall_max_s": max(walls),
        "help_cpu_median_s": statistics.median(c for _, c in helps),
        "python_bare_wall_median_s": statistics.median(w for w, _ in bares),
    }


def report(figures: dict[str, float]) -> str:
    f = figures
    return (
        f"`newsletter --help` ({int(f['runs'])} runs, load average {f['load_average']:.2f}): "
        f"wall median {f['help_wall_median_s']:.3f} s (min {f['help_wall_min_s']:.3f}, "
        f"max {f['help_wall_max_s']:.3f}), CPU median {f['help_cpu_median_s']:.3f} s; "
        f"bare `python -c pass` {f['python_bare_wall_median_s']:.3f} s  (goal < 0.3 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.runs)
    print(json.dumps(figures) if args.json else report(figures))


if __name__ == "__main__":
    main()
