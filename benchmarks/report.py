"""`make bench`: issue 26's every row from one run, each goal beside it; `--scale`: 10k to 1M readers.

    .venv/bin/python benchmarks/report.py [--quick] [--json FILE]
    .venv/bin/python benchmarks/report.py --scale [10000,100000,1000000] [--quick] [--json FILE]

The report runs, one after another on this machine (nothing else should run meanwhile: the
figures are wall-clock rates on two shared cores), each printing its own table:

1. `production.py --n 30000` and `--n 100000` on PostgreSQL: the real `newsletter worker` and
   `newsletter beat` on the real clock (the production path): slot -> first request, recipients/s
   from the slot, CPU and peak RSS per process;
2. `importing.py --n 30000` and `--n 100000`, SQLite and PostgreSQL: `subscribers import --confirmed`;
3. `tick_inline.py --n 20000` on PostgreSQL: `newsletter tick`, start-up included;
4. `admin_pages.py --readers 100000 --ledger 1000000`, SQLite and PostgreSQL: every admin page
   over HTTP, and the two exports of 100k rows to their last byte;
5. `peer_django.py --n 5000`: django-newsletter's `submit_newsletter` (locmem backend: the peer's
   best case) in its own virtualenv; without network access to the package index for its first
   set-up it says so and only its rows are skipped;

then one Markdown table, "what | measured | goal | met", and under it the CPU split per 1,000
recipients of each production run (beat, the worker's main process and its pool, PostgreSQL's
backends, the stand-in) with the worker's and beat's peak RSS. Without PostgreSQL on
127.0.0.1:5432 its rows run on SQLite and say so. `--quick` divides every N by 10 (to try the
harness; its figures are not the goals' sizes).

`--scale` runs instead, at each size (readers): `importing.py` of that many rows, one slot's
burst through the production path, and the admin pages (ledger rows: ten per reader, at most
1,000,000), all on PostgreSQL; then a table of CPU per 1,000 recipients at each size (split as
above), worker and beat peak RSS, and each size's cost against the smallest's (the issue: at 1M
within 1.25x of the smallest, worker RSS < 200 MB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import peer_django  # noqa: E402
import production  # noqa: E402

SCALE_SIZES = (10_000, 100_000, 1_000_000)
PEER_N = 5_000
EXPORTS = ("export_csv", "export_json")


@dataclass(frozen=True)
class Row:
    """One line of the issue's table: where its figure comes from and the goal it is held to."""

    what: str
    run: str  # key into the runs
    figure: Callable[[dict[str, Any]], float]
    goal: float
    at_most: bool  # True: the figure must be <= goal (a time); False: >= goal (a rate)
    unit: str
    note: Callable[[dict[str, Any]], str] | None = None  # more of the run, after the figure


def _admin_figure(name: str, page: dict[str, Any]) -> float:
    """A page's seconds; for an export, to its first rows (the page answers; the file streams)."""
    return float(page.get("first_rows", page["seconds"])) if name in EXPORTS else page["seconds"]


def _pages(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pages as the app answers them in-process (the exports over a real server are apart)."""
    return {
        name: page
        for name, page in r["pages"].items()
        if "seconds" in page and not name.endswith("_uvicorn")
    }


def _admin_slowest(r: dict[str, Any]) -> float:
    """The slowest admin page's seconds (admin_pages.py reports each page)."""
    return max(_admin_figure(name, p) for name, p in _pages(r).items())


def _admin_slowest_name(r: dict[str, Any]) -> str:
    pages = _pages(r)
    return max(pages, key=lambda name: _admin_figure(name, pages[name]))


def _export_whole(r: dict[str, Any]) -> float:
    """The slower of the CSV and JSON export, whole file over HTTP (seconds): from a real
    uvicorn server when admin_pages.py ran one (what a browser gets), else the test client."""
    pages = r["pages"]
    real = [f"{name}_uvicorn" for name in EXPORTS if "seconds" in pages.get(f"{name}_uvicorn", {})]
    names = real or [name for name in EXPORTS if name in pages]
    return max(float(pages[name]["seconds"]) for name in names)


def _rows(r: dict[str, Any]) -> str:
    return f"{r['n']:,} rows"


def _production_note(r: dict[str, Any]) -> str:
    return f"N = {r['n']:,}, {r['db']}, load {r['load_average_at_start']:.1f}"


def _ratio_note(r: dict[str, Any]) -> str:
    return (
        f"ours {r['ours']:,.0f}/s ({r['ours_from']}) / peer {r['peer']:,.0f}/s "
        f"({r['backend']}, N = {r['peer_n']:,})"
    )


ROWS = [
    Row("first request after the slot, 30k readers (s)", "production_30k",
        lambda r: r["slot_to_first_s"], 1.0, True, "s", _production_note),
    Row("first request after the slot, 100k readers (s)", "production_100k",
        lambda r: r["slot_to_first_s"], 1.0, True, "s", _production_note),
    Row("recipients/s from the slot, 30k readers", "production_30k",
        lambda r: r["recipients_per_s_slot_to_last"], 20_000, False, "/s", _production_note),
    Row("recipients/s from the slot, 100k readers", "production_100k",
        lambda r: r["recipients_per_s_slot_to_last"], 20_000, False, "/s", _production_note),
    Row("CSV import rows/s, 30k, SQLite", "import_sqlite_30k", lambda r: r["rows_per_s"],
        25_000, False, "/s", _rows),
    Row("CSV import rows/s, 30k, PostgreSQL", "import_postgresql_30k", lambda r: r["rows_per_s"],
        25_000, False, "/s", _rows),
    Row("CSV import rows/s, 100k, SQLite", "import_sqlite_100k", lambda r: r["rows_per_s"],
        25_000, False, "/s", _rows),
    Row("CSV import rows/s, 100k, PostgreSQL", "import_postgresql_100k",
        lambda r: r["rows_per_s"], 25_000, False, "/s", _rows),
    Row("inline `newsletter tick`, 20k, start-up included, recipients/s", "tick",
        lambda r: r["recipients_per_s"], 10_000, False, "/s",
        lambda r: f"N = {r['n']:,}, {r['db']}, first request after "
                  f"{r['start_to_first_request_s']:.2f} s"),
    Row("admin, 100k readers / 1M ledger rows, slowest page, SQLite (s)", "admin_sqlite",
        _admin_slowest, 0.15, True, "s", _admin_slowest_name),
    Row("admin, 100k readers / 1M ledger rows, slowest page, PostgreSQL (s)", "admin_postgresql",
        _admin_slowest, 0.15, True, "s", _admin_slowest_name),
    Row("export of 100k rows, whole file from a real server, slower of CSV/JSON, SQLite (s)",
        "admin_sqlite", _export_whole, 1.5, True, "s"),
    Row("export of 100k rows, whole file from a real server, slower of CSV/JSON, PostgreSQL (s)",
        "admin_postgresql", _export_whole, 1.5, True, "s"),
    Row("django-newsletter in the same run: ours / peer", "peer_ratio", lambda r: r["ratio"],
        25.0, False, "x", _ratio_note),
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


def pg_kind() -> str:
    return "postgresql" if harness.port_open("127.0.0.1", 5432) else "sqlite"


def admin_url(db: str, tag: str) -> str:
    """admin_pages.py's --db: a SQLite file of its own, or a PostgreSQL database it drops after."""
    if db == "sqlite":
        return "sqlite"
    return f"{harness.DEFAULT_PG.rsplit('/', 1)[0]}/nl_admin_bench_{tag}_{os.getpid()}"


def run_admin(db: str, readers: int, ledger: int, tag: str) -> dict[str, Any]:
    r = run_json("admin_pages.py", "--readers", str(readers), "--ledger", str(ledger),
                 "--db", admin_url(db, tag), "--drop")  # fmt: skip
    print(f"admin pages, {db}, {readers:,} readers: seconds (exports: to the first rows / whole "
          "file), SQL statements")  # fmt: skip
    for name, page in r["pages"].items():
        whole = f" / {page['seconds']:.3f} s" if name in EXPORTS else ""
        statements = page.get("statements", "")  # none counted across a real server's process
        print(f"  {name:<40}{_admin_figure(name, page):>8.3f} s{whole} {statements:>4}")
    return r


def run_peer(n: int) -> dict[str, Any]:
    """The peer at n readers, or {"skipped": why} (no network access to the index, a failure)."""
    print(f"$ benchmarks/peer_django.py --n {n}", file=sys.stderr, flush=True)
    try:
        r = peer_django.run(n)
    except peer_django.PeerUnavailable as exc:
        print(f"django-newsletter peer skipped: {exc}", flush=True)
        return {"skipped": str(exc)}
    except SystemExit as exc:  # a failed run: say so, keep the rest of the report
        print(f"django-newsletter peer failed: {exc}", flush=True)
        return {"skipped": f"the peer's run failed: {str(exc)[-300:]}"}
    print(peer_django.report(r), flush=True)
    return r


def peer_ratio(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ours (the slower of the production runs, recipients/s from the slot) / the peer's emails/s."""
    peer = runs.get("peer", {"skipped": "not run"})
    if "skipped" in peer:
        return {"skipped": peer["skipped"]}
    ours = [
        (runs[key]["recipients_per_s_slot_to_last"], f"{runs[key]['n']:,} from the slot")
        for key in ("production_30k", "production_100k")
        if key in runs and "skipped" not in runs[key]
    ]
    if not ours:
        return {"skipped": "no production run"}
    rate, source = min(ours)
    return {
        "ratio": rate / peer["emails_per_s"],
        "ours": rate,
        "ours_from": source,
        "peer": peer["emails_per_s"],
        "backend": peer["backend"],
        "peer_n": peer["n"],
    }


def measure(quick: bool, peer_n: int = PEER_N) -> dict[str, dict[str, Any]]:
    scale = 10 if quick else 1
    pg = pg_kind()
    runs: dict[str, dict[str, Any]] = {}
    for n, key in ((30_000, "production_30k"), (100_000, "production_100k")):
        runs[key] = run_json("production.py", "--n", str(n // scale), "--db", pg)
        print(production.table(runs[key]), flush=True)
    import importing

    for n, size in ((30_000, "30k"), (100_000, "100k")):
        for db in ("sqlite", pg):
            key = f"import_{db}_{size}"
            runs[key] = run_json("importing.py", "--n", str(n // scale), "--db", db)
            print(importing.report(runs[key]), flush=True)
    import tick_inline

    runs["tick"] = run_json("tick_inline.py", "--n", str(20_000 // scale), "--db", pg)
    print(tick_inline.report(runs["tick"]), flush=True)
    for db in dict.fromkeys(("sqlite", pg)):
        runs[f"admin_{db}"] = run_admin(db, 100_000 // scale, 1_000_000 // scale, "report")
    runs["peer"] = run_peer(peer_n // scale)
    runs["peer_ratio"] = peer_ratio(runs)
    return runs


def _fmt(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "x":
        return f"{value:.1f}×"
    return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


def table(runs: dict[str, dict[str, Any]], quick: bool = False) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"issue 26, every row, {when}, nproc={os.cpu_count()}, load average "
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
        run = runs[row.run]
        goal = ("≤ " if row.at_most else "≥ ") + _fmt(row.goal, row.unit)
        if "skipped" in run:
            lines.append(f"| {row.what} | skipped: {run['skipped']} | {goal} | – |")
            continue
        value = row.figure(run)
        met = value <= row.goal if row.at_most else value >= row.goal
        measured = _fmt(value, row.unit) + (f" ({row.note(run)})" if row.note else "")
        lines.append(f"| {row.what} | {measured} | {goal} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


SPLIT = (
    ("worker_pool", "worker pool"),
    ("worker_main", "worker main"),
    ("beat", "beat"),
    ("ours", "ours"),
    ("postgres", "PostgreSQL"),
    ("sink", "stand-in"),
    ("all", "all"),
)


def cpu_table(runs: dict[str, dict[str, Any]], keys: list[str]) -> str:
    """CPU ms per 1,000 recipients by process, and peak RSS, of each production run named."""
    head = " | ".join(label for _, label in SPLIT)
    lines = [
        "CPU ms per 1,000 recipients, from 3 s before the slot to the last request (ours: beat + "
        "the worker's main process + its pool, which runs every tick and every send); peak RSS MB",
        "",
        f"| run | {head} | RSS worker main / pool | RSS beat |",
        "| --- |" + " --- |" * (len(SPLIT) + 2),
    ]
    for key in keys:
        r = runs.get(key)
        if r is None or "skipped" in r:
            continue
        split, rss = production.cpu_split(r), production.peak_rss(r)
        cells = " | ".join(f"{split[k]:.0f}" for k, _ in SPLIT)
        lines.append(
            f"| {r['n']:,} readers, {r['db']} | {cells} | "
            f"{rss['worker_main']:.0f} / {rss['worker_pool']:.0f} | {rss['beat']:.0f} |"
        )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes: positive integers, comma-separated: {text!r}")
    return sizes


def scale_ledger(readers: int) -> int:
    """Ledger rows the admin pages are measured over at a size: ten per reader, at most 1M."""
    return min(10 * readers, 1_000_000)


def measure_scale(sizes: list[int], quick: bool) -> dict[str, dict[str, Any]]:
    """At each size: import that many rows, one slot's burst (production path), the admin pages."""
    scale = 10 if quick else 1
    pg = pg_kind()
    import importing

    runs: dict[str, dict[str, Any]] = {}
    for size in sizes:
        n = max(1, size // scale)
        runs[f"import_{n}"] = run_json("importing.py", "--n", str(n), "--db", pg)
        print(importing.report(runs[f"import_{n}"]), flush=True)
        runs[f"production_{n}"] = run_json("production.py", "--n", str(n), "--db", pg)
        print(production.table(runs[f"production_{n}"]), flush=True)
        runs[f"admin_{n}"] = run_admin(pg, n, scale_ledger(n), f"scale{n}")
    return runs


def scale_table(runs: dict[str, dict[str, Any]], sizes: list[int], quick: bool) -> str:
    """Per size: import, burst, admin; CPU per 1,000 by process; RSS; cost against the smallest."""
    scale = 10 if quick else 1
    ns = [max(1, size // scale) for size in sizes]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"issue 26, --scale, {when}, nproc={os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.2f} at the end" + (" (--quick: sizes / 10)" if quick else ""),
        "",
        "| readers | import rows/s | first request (s) | recipients/s from the slot | "
        "slowest admin page (s) | export whole file (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in ns:
        imp, prod, admin = runs[f"import_{n}"], runs[f"production_{n}"], runs[f"admin_{n}"]
        lines.append(
            f"| {n:,} | {imp['rows_per_s']:,.0f} | {prod['slot_to_first_s']:.2f} | "
            f"{prod['recipients_per_s_slot_to_last']:,.0f} | {_admin_slowest(admin):.3f} "
            f"({_admin_slowest_name(admin)}, {admin['ledger_rows']:,} ledger rows) | "
            f"{_export_whole(admin):.2f} |"
        )
    lines += ["", cpu_table(runs, [f"production_{n}" for n in ns]), ""]
    base = production.cpu_split(runs[f"production_{ns[0]}"])
    lines.append(
        f"cost per 1,000 against {ns[0]:,} readers (goal: within 1.25× at 1M; worker RSS < 200 MB):"
    )
    for n in ns[1:]:
        split = production.cpu_split(runs[f"production_{n}"])
        rss = production.peak_rss(runs[f"production_{n}"])
        worker_rss = max(rss["worker_main"], rss["worker_pool"])
        lines.append(
            f"  {n:,}: ours {split['ours'] / max(base['ours'], 1e-9):.2f}×, "
            f"all {split['all'] / max(base['all'], 1e-9):.2f}×, "
            f"PostgreSQL {split['postgres'] / max(base['postgres'], 1e-9):.2f}×; "
            f"worker peak RSS {worker_rss:.0f} MB"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every N / 10: try the harness")
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures here")
    parser.add_argument(
        "--scale",
        nargs="?",
        const=",".join(str(s) for s in SCALE_SIZES),
        type=parse_sizes,
        metavar="SIZES",
        help="instead: the production path at these sizes (default 10000,100000,1000000)",
    )
    parser.add_argument("--peer-n", type=int, default=PEER_N, help="django-newsletter's readers")
    args = parser.parse_args()
    started, load = time.monotonic(), os.getloadavg()[0]
    if args.scale:
        runs = measure_scale(args.scale, args.quick)
        text = scale_table(runs, args.scale, args.quick)
    else:
        runs = measure(args.quick, args.peer_n)
        text = (
            table(runs, args.quick)
            + "\n\n"
            + cpu_table(runs, ["production_30k", "production_100k"])
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1, default=str))
    print()
    print(text)
    print(
        f"\n{time.monotonic() - started:.0f} s in all; load average {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
