"""Production-path benchmark: the real `newsletter worker` and `newsletter beat` on the real clock.

    .venv/bin/python benchmarks/production.py [--n 10000] [--db sqlite|postgresql] [--json]

What a new user runs: a fresh database (as benchmarks/harness.py makes it) with N confirmed
readers in UTC, all due at the next whole minute that is at least `--lead` seconds (+ 1 s per
25,000 readers: marking them due and rebuilding Redis come after) away; the
SendGrid backend pointed at the stand-in (benchmarks/sink.py); then `python -m newsletter worker`
(default concurrency: one process per core) and `python -m newsletter beat`, started as a user
starts them, and nothing else: beat's own tick at the slot claims, plans and fans out; the
workers send. Measured against the wall clock, which every process here shares:

- slot -> first request: the slot to the stand-in's first accepted request,
- slot -> last request, and first -> last (recipients/s over each),
- CPU seconds per process (worker main and pool processes, beat, the stand-in, the PostgreSQL
  backends of this database) from 3 s before the slot to the end, and peak RSS per process;
  `cpu_split` and `peak_rss` group them per 1,000 recipients as report.py prints them.

The ledger is checked afterwards: N rows sent, once each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import instrument  # noqa: E402


def next_slot(lead: float, now: float | None = None) -> dt.datetime:
    """The first whole minute at least `lead` seconds from now."""
    now = time.time() if now is None else now
    return dt.datetime.fromtimestamp(math.ceil((now + lead) / 60) * 60, dt.UTC)


def due_at(db_url: str, slot: dt.datetime) -> int:
    """Everyone's part 1 due at `slot` (the seed put it at a slot in 2027); Redis rebuilt."""
    from sqlalchemy import update

    from newsletter.core.config import get_settings
    from newsletter.queue.dueset import RedisQueue
    from newsletter.store.db import session_scope
    from newsletter.store.models import ENROLLED_ACTIVE, Enrollment

    with session_scope(db_url) as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.state == ENROLLED_ACTIVE)
            .values(next_due_at=slot)
            .execution_options(synchronize_session=False)
        )
    with session_scope(db_url) as session:
        return RedisQueue(get_settings()).rebuild(session)


def sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as reply:
        return dict(json.loads(reply.read()))


class Processes:
    """CPU seconds and peak RSS of a process tree, sampled until stopped (pool processes come
    and go; each is counted from its first sample, which is at most 0.2 s after it started)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.cpu: dict[tuple[str, int], float] = {}
        self.base: dict[tuple[str, int], float] = {}
        self.rss: dict[tuple[str, int], float] = {}

    def sample(self, baseline: bool = False) -> None:
        """Read every process's CPU and peak RSS; `baseline`: count CPU from now on."""
        import psutil

        for name, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                procs = [(name, root), *((f"{name} pool", c) for c in root.children(True))]
            except psutil.Error:
                continue
            for label, proc in procs:
                try:
                    t = proc.cpu_times()
                    key = (label, proc.pid)
                    self.cpu[key] = t.user + t.system
                    if baseline:  # counted from here on
                        self.base[key] = self.cpu[key]
                    else:  # a process that started after the baseline counts in full
                        self.base.setdefault(key, 0.0)
                    self.rss[key] = max(self.rss.get(key, 0.0), instrument.peak_rss_mb(proc.pid))
                except psutil.Error:
                    continue

    def figures(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (label, pid), cpu in self.cpu.items():
            entry = out.setdefault(label, {"cpu_s": 0.0, "peak_rss_mb": 0.0, "processes": 0})
            entry["cpu_s"] += cpu - self.base.get((label, pid), 0.0)
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], self.rss.get((label, pid), 0.0))
            entry["processes"] += 1
        return out


def check_ledger(db_url: str, n: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from newsletter.store.db import session_scope
    from newsletter.store.models import Delivery

    with session_scope(db_url) as session:
        rows = dict(
            session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )
    return {str(k): int(v) for k, v in rows.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    setup = harness.Setup.open(args, "prod")
    kind, tmp, db, env = setup.kind, setup.tmp, setup.db, setup.env
    children: list[harness.Child] = []
    result = setup.header(args.n)
    try:
        sink, sink_url = harness.start_sink(env, tmp)
        children.append(sink)
        db.create()
        seeded = harness.seed(db.url, args.n, 0)
        result["seed_s"] = seeded["seed_s"]
        # marking N due and rebuilding Redis happen after the slot is chosen: more lead at 1M
        slot = next_slot(args.lead + args.n / 25_000)
        assert due_at(db.url, slot) == args.n
        result["slot"] = slot.isoformat()
        exe = [sys.executable, "-m", "newsletter"]
        worker = harness.Child([*exe, "worker"], env, tmp / "worker.log")
        beat = harness.Child([*exe, "beat"], env, tmp / "beat.log")
        children += [worker, beat]
        watch = Processes({"worker": worker.proc.pid, "beat": beat.proc.pid, "sink": sink.proc.pid})
        postgres = harness.CpuSampler(db.name, []) if kind == "postgresql" else None
        # from a few seconds before the slot: start-up is not the burst's cost
        while time.time() < slot.timestamp() - 3:
            watch.sample()
            time.sleep(0.2)
        watch.sample(baseline=True)
        if postgres is not None:
            postgres.start()
        deadline = slot.timestamp() + args.timeout
        stats: dict[str, Any] = {}
        while time.time() < deadline:
            watch.sample()
            stats = sink_stats(sink_url)
            if stats["recipients"] >= args.n:
                break
            time.sleep(0.2)
        watch.sample()
        if postgres is not None:
            result["postgres_cpu_s"] = postgres.stop()["postgres"]
        result["processes"] = watch.figures()
        result["sink"] = {
            k: stats.get(k) for k in ("requests", "recipients", "duplicate_delivery_ids")
        }
        first, last = stats.get("first_at"), stats.get("last_at")
        if stats.get("recipients", 0) < args.n or first is None or last is None:
            raise SystemExit(f"not all sent by the timeout: {stats}; logs in {tmp}")
        at = slot.timestamp()
        result["slot_to_first_s"] = first - at
        result["slot_to_last_s"] = last - at
        result["first_to_last_s"] = last - first
        result["recipients_per_s_first_to_last"] = args.n / max(last - first, 1e-9)
        result["recipients_per_s_slot_to_last"] = args.n / max(last - at, 1e-9)
        time.sleep(2)  # the last chunk's ledger commit
        result["ledger"] = check_ledger(db.url, args.n)
    finally:
        for child in reversed(children):
            child.stop()
        setup.close()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def cpu_split(r: dict[str, Any]) -> dict[str, float]:
    """CPU ms per 1,000 recipients by who spent it: beat, the worker's main process, its pool
    (every tick and every send), ours (their sum), PostgreSQL's backends, the stand-in, all."""
    per_k = 1000 / r["n"]
    procs = r["processes"]

    def ms(*labels: str) -> float:
        return sum(procs.get(label, {}).get("cpu_s", 0.0) for label in labels) * 1000 * per_k

    split = {
        "beat": ms("beat", "beat pool"),
        "worker_main": ms("worker"),
        "worker_pool": ms("worker pool"),
    }
    split["ours"] = sum(split.values())
    split["postgres"] = r.get("postgres_cpu_s", 0.0) * 1000 * per_k
    split["sink"] = ms("sink", "sink pool")
    split["all"] = split["ours"] + split["postgres"] + split["sink"]
    return split


def peak_rss(r: dict[str, Any]) -> dict[str, float]:
    """Peak RSS in MB: the worker's main process, its largest pool process, beat."""
    procs = r["processes"]

    def mb(*labels: str) -> float:
        return max((procs.get(label, {}).get("peak_rss_mb", 0.0) for label in labels), default=0.0)

    return {
        "worker_main": mb("worker"),
        "worker_pool": mb("worker pool"),
        "beat": mb("beat", "beat pool"),
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f"production path  {r['date']}  db={r['db']}  nproc={r['nproc']}  N={r['n']:,}  "
        f"load average at start={r['load_average_at_start']:.2f}  slot={r['slot']}",
        "",
        f"{'slot -> first request (s)':<44}{r['slot_to_first_s']:>10.2f}   goal <= 1",
        f"{'slot -> last request (s)':<44}{r['slot_to_last_s']:>10.2f}",
        f"{'first -> last request (s)':<44}{r['first_to_last_s']:>10.2f}",
        f"{'recipients/s, first -> last':<44}{r['recipients_per_s_first_to_last']:>10,.0f}",
        f"{'recipients/s, slot -> last':<44}{r['recipients_per_s_slot_to_last']:>10,.0f}"
        "   goal >= 20,000",
    ]
    per_k = 1000 / r["n"]
    for label, f in sorted(r["processes"].items()):
        lines.append(
            f"{label + ': CPU ms / 1,000, peak RSS MB':<44}{f['cpu_s'] * 1000 * per_k:>10,.0f}"
            f"   {f['peak_rss_mb']:.0f} MB ({int(f['processes'])} process(es))"
        )
    if "postgres_cpu_s" in r:
        lines.append(
            f"{'postgres: CPU ms / 1,000':<44}{r['postgres_cpu_s'] * 1000 * per_k:>10,.0f}"
        )
    lines.append(f"ledger: {r['ledger']}; sink: {r['sink']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="readers due at the slot")
    harness.setup_options(parser)
    parser.add_argument("--lead", type=float, default=40.0, help="at least this many s to the slot")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up this long after")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
