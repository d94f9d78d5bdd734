"""`make bench`: every benchmark once, each one's own table, then issue 15's rows beside the goals.

    .venv/bin/python benchmarks/report.py [--quick] [--json FILE]

Runs, one after another on this machine (nothing else should run meanwhile: the figures are
wall-clock rates on two shared cores):

1. `dispatch.py` at its defaults: the engine's burst beside the naive baseline;
2. `dispatch.py --n 100000 --naive-n 0 --db postgresql`: the engine at 100k;
3. `production.py --n 30000 --db postgresql`: the real worker and beat on the real clock, and
   the same on `make run`'s default (SQLite, the embedded Redis, the signing key in var/);
4. `importing.py --n 30000`, SQLite and PostgreSQL: `subscribers import --confirmed`;
5. `tick_inline.py --n 20000 --db postgresql`: `newsletter tick`, the CLI path;
6. `startup.py`: `newsletter --help`;
7. `admin_pages.py --readers 100000 --ledger 1000000`, SQLite and PostgreSQL: every admin page
   over HTTP (exports: to their first rows).

then prints one Markdown table, "what | measured | goal | met", ready for benchmarks/README.md's
table per date. Without PostgreSQL on 127.0.0.1:5432 those rows run on SQLite and say so.
`--quick` divides every N by 10 (to try the harness; its figures are not the goals' sizes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dispatch  # noqa: E402
import harness  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One line of the issue's table: where its figure comes from and the goal it is held to."""

    what: str
    run: str  # key into the runs
    figure: Callable[[dict[str, Any]], float]
    goal: float
    at_most: bool  # True: the figure must be <= goal (a time); False: >= goal (a rate)
    unit: str


def _admin_figure(page: dict[str, Any]) -> float:
    """A page's seconds; for an export, to its first rows (the issue: "start answering")."""
    return float(page.get("first_rows", page["seconds"]))


def _admin_slowest(r: dict[str, Any]) -> float:
    """The slowest admin page's seconds (admin_pages.py reports each page)."""
    return max(_admin_figure(p) for p in r["pages"].values())


ROWS = [
    Row("first request after the slot (s)", "production", lambda r: r["slot_to_first_s"],
        2.0, True, "s"),
    Row("recipients/s, first request -> last", "production",
        lambda r: r["recipients_per_s_first_to_last"], 15_000, False, "/s"),
    Row("recipients/s, slot -> last", "production",
        lambda r: r["recipients_per_s_slot_to_last"], 12_000, False, "/s"),
    Row("the same, `make run`'s default (SQLite, embedded Redis): first request (s)",
        "production_default", lambda r: r["slot_to_first_s"], 2.0, True, "s"),
    Row("the same: recipients/s, first request -> last", "production_default",
        lambda r: r["recipients_per_s_first_to_last"], 15_000, False, "/s"),
    Row("the same: recipients/s, slot -> last", "production_default",
        lambda r: r["recipients_per_s_slot_to_last"], 12_000, False, "/s"),
    Row("`subscribers import` --confirmed, rows/s (SQLite)", "import_sqlite",
        lambda r: r["rows_per_s"], 20_000, False, "/s"),
    Row("`subscribers import` --confirmed, rows/s (PostgreSQL)", "import_postgresql",
        lambda r: r["rows_per_s"], 20_000, False, "/s"),
    Row("`newsletter tick` inline, recipients/s (start-up included)", "tick",
        lambda r: r["recipients_per_s"], 10_000, False, "/s"),
    Row("`newsletter --help`, wall median (s)", "startup",
        lambda r: r["help_wall_median_s"], 0.3, True, "s"),
    Row("`dispatch.py --n 100000 --naive-n 0`, recipients/s", "dispatch_100k",
        lambda r: r["ours"]["recipients_per_s"], 20_000, False, "/s"),
    Row("admin at 100k readers + 1M ledger rows, slowest page (s, SQLite)", "admin_sqlite", _admin_slowest,
        0.2, True, "s"),
    Row("admin at 100k readers + 1M ledger rows, slowest page (s, PostgreSQL)", "admin_postgresql",
        _admin_slowest, 0.2, True, "s"),
]  # fmt: skip


def run_json(script: str, *argv: str) -> dict[str, Any]:
    """Run one benchmark with --json in a fresh interpreter; its JSON result."""
    cmd = [sys.executable, str(HERE / script), *argv, "--json"]
    print(f"$ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    start = done.stdout.index("{")
    result, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    return dict(result)


def measure(quick: bool) -> dict[str, dict[str, Any]]:
    scale = 10 if quick else 1
    pg = "postgresql" if harness.port_open("127.0.0.1", 5432) else "sqlite"
    runs: dict[str, dict[str, Any]] = {}
    runs["dispatch"] = run_json("dispatch.py", "--n", str(10_000 // scale))
    print(dispatch.table(runs["dispatch"]), flush=True)
    runs["dispatch_100k"] = run_json(
        "dispatch.py", "--n", str(100_000 // scale), "--naive-n", "0", "--db", pg
    )
    print(dispatch.table(runs["dispatch_100k"]), flush=True)
    import production

    runs["production"] = run_json("production.py", "--n", str(30_000 // scale), "--db", pg)
    print(production.table(runs["production"]), flush=True)
    runs["production_default"] = run_json(
        "production.py",
        "--n",
        str(30_000 // scale),
        "--db",
        "sqlite",
        "--embedded-redis",
        "--key-file",
    )
    print(production.table(runs["production_default"]), flush=True)
    import importing

    for db in ("sqlite", pg):
        runs[f"import_{db}"] = run_json("importing.py", "--n", str(30_000 // scale), "--db", db)
        print(importing.report(runs[f"import_{db}"]), flush=True)
    import tick_inline

    runs["tick"] = run_json("tick_inline.py", "--n", str(20_000 // scale), "--db", pg)
    print(tick_inline.report(runs["tick"]), flush=True)
    import startup

    runs["startup"] = run_json("startup.py")
    print(startup.report(runs["startup"]), flush=True)
    admin_dbs = {"sqlite": "sqlite"}
    if pg == "postgresql":
        admin_dbs[pg] = f"{harness.DEFAULT_PG.rsplit('/', 1)[0]}/nl_admin_bench_{os.getpid()}"
    for db, url in admin_dbs.items():
        runs[f"admin_{db}"] = run_json(
            "admin_pages.py", "--readers", str(100_000 // scale), "--ledger",
            str(1_000_000 // scale), "--db", url, "--drop",
        )  # fmt: skip
        print(f"admin pages, {db}: seconds (exports: to the first rows), SQL statements")
        for name, page in runs[f"admin_{db}"]["pages"].items():
            print(f"  {name:<40}{_admin_figure(page):>8.3f} s {page['statements']:>4}")
    return runs


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.0f}/s" if unit == "/s" else f"{value:.2f} s"


def table(runs: dict[str, dict[str, Any]], quick: bool = False) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"issue 15, every row, {when}, nproc={os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.2f} at the end"
        + (
            " (--quick: every size a tenth of the one named, not the goals' sizes)" if quick else ""
        ),
        "",
        "| what | measured | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for row in ROWS:
        if row.run not in runs:
            continue
        value = row.figure(runs[row.run])
        met = value <= row.goal if row.at_most else value >= row.goal
        goal = ("≤ " if row.at_most else "≥ ") + _fmt(row.goal, row.unit)
        lines.append(
            f"| {row.what} | {_fmt(value, row.unit)} | {goal} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every N / 10: try the harness")
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    args = parser.parse_args()
    runs = measure(args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1, default=str))
    print()
    print(table(runs, args.quick))


if __name__ == "__main__":
    main()
