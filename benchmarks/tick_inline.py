"""`newsletter tick` inline, the CLI path: one command sends a slot's N readers (goal ≥ 10,000/s).

    .venv/bin/python benchmarks/tick_inline.py [--n 20000] [--db sqlite|postgresql] [--json]
        [--profile FILE]

A fresh database (as benchmarks/harness.py makes it) with N confirmed readers in UTC, all due
at one slot; the SendGrid backend pointed at the stand-in (benchmarks/sink.py); then
`python -m newsletter tick --now SLOT --json`, run as a user runs it, in a fresh interpreter.
Reported: the command's wall time from exec to exit (start-up and imports included, as the
user waits for them), recipients/s over it, the time to the stand-in's first request (what the
start-up costs), the command's CPU (user + system) and the stand-in's and PostgreSQL's CPU per
1,000 recipients, so a missed goal says where the time went. The ledger is checked: N sent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import production  # noqa: E402

SLOT = dt.datetime(2027, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Tuesday morning; the clock is --now


def run(args: argparse.Namespace) -> dict[str, Any]:
    setup = harness.Setup.open(args, "tick")
    kind, tmp, db, env = setup.kind, setup.tmp, setup.db, setup.env
    result = setup.header(args.n)
    sink: harness.Child | None = None
    try:
        sink, sink_url = harness.start_sink(env, tmp)
        db.create()
        result["seed_s"] = harness.seed(db.url, args.n, 0)["seed_s"]
        assert production.due_at(db.url, SLOT) == args.n
        watch = production.Processes({"sink": sink.proc.pid})
        watch.sample(baseline=True)
        postgres = harness.CpuSampler(db.name, []) if kind == "postgresql" else None
        if postgres is not None:
            postgres.start()
        argv = [sys.executable, "-m", "newsletter", "tick", "--now", SLOT.isoformat(), "--json"]
        if args.profile:  # the same command under cProfile (slower: for where, not how fast)
            argv[1:1] = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        ended = time.time()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        watch.sample()
        if postgres is not None:
            result["postgres_cpu_s"] = postgres.stop()["postgres"]
        if done.returncode != 0:
            raise SystemExit(f"tick failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        stats = production.sink_stats(sink_url)
        result["summary"] = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = ended - started
        result["recipients_per_s"] = args.n / result["wall_s"]
        result["start_to_first_request_s"] = float(stats["first_at"]) - started
        result["first_to_last_request_s"] = float(stats["last_at"]) - float(stats["first_at"])
        result["tick_cpu_s"] = (after.ru_utime - before.ru_utime) + (
            after.ru_stime - before.ru_stime
        )
        result["sink_cpu_s"] = watch.figures().get("sink", {}).get("cpu_s", 0.0)
        result["sink"] = {
            k: stats.get(k) for k in ("requests", "recipients", "duplicate_delivery_ids")
        }
        result["ledger"] = production.check_ledger(db.url, args.n)
    finally:
        if sink is not None:
            sink.stop()
        setup.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if result["ledger"] != {"sent": args.n} or result["sink"]["duplicate_delivery_ids"]:
        raise SystemExit(f"ledger or stand-in wrong: {result['ledger']}, {result['sink']}")
    return result


def report(r: dict[str, Any]) -> str:
    per_k = 1000 / r["n"]
    cpu = (
        f"tick {r['tick_cpu_s'] * 1000 * per_k:.0f}, stand-in {r['sink_cpu_s'] * 1000 * per_k:.0f}"
    )
    if "postgres_cpu_s" in r:
        cpu += f", PostgreSQL {r['postgres_cpu_s'] * 1000 * per_k:.0f}"
    return (
        f"`newsletter tick` inline  {r['date']}  db={r['db']}  N={r['n']:,}  load average at "
        f"start={r['load_average_at_start']:.2f}: {r['wall_s']:.2f} s wall (start-up included), "
        f"{r['recipients_per_s']:,.0f} recipients/s (goal >= 10,000); exec -> first request "
        f"{r['start_to_first_request_s']:.2f} s, first -> last {r['first_to_last_request_s']:.2f}"
        f" s; CPU ms / 1,000: {cpu}; summary {r['summary']}, ledger {r['ledger']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="readers due at the slot")
    harness.setup_options(parser)
    parser.add_argument("--profile", metavar="FILE", help="run the tick under cProfile, stats here")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result) if args.json else report(result))
    if args.profile:
        import pstats

        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
