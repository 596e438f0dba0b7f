"""Only the server hot-path rows of `make bench`: check-ins and event ingest against their limits.

Runs the same pieces as bench/run.py (``measure_esmd``, ``measure_bare``, the raw batched
inserts), back to back, on SQLite and (when a server is at 127.0.0.1:5432) PostgreSQL, and
prints the ratios. For before/after comparisons on a shared machine: run it under
``flock /tmp/traps-bench.lock`` and compare runs taken one right after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg import fresh_database, raw_insert_rate
from run import measure_bare, measure_esmd, measure_raw_insert


def measure(seconds: float, agents: int, postgres: bool, variants: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="traps-hotpath-") as tmp:
        work = Path(tmp)
        load = [os.getloadavg()[0]]
        bare = measure_bare(work, seconds)
        esmd = measure_esmd(work, agents, seconds, telemetry_variants=variants)
        raw = measure_raw_insert(work)
        figures: dict[str, Any] = {
            "bare_rate": round(bare.rate),
            "checkin_rate": round(esmd["checkin"].rate),
            "checkin_ratio": round(esmd["checkin"].rate / bare.rate, 3),
            "checkin_p99_ms": round(esmd["checkin"].percentile(0.99), 1),
            "errors": esmd["checkin"].errors + esmd["ingest"].errors,
            "ingest_rate": round(esmd["ingest"].rate * 100),
            "raw_insert_rate": round(raw),
            "ingest_ratio": round(esmd["ingest"].rate * 100 / raw, 3),
        }
        if postgres:
            with fresh_database() as url:
                if url:
                    pg = measure_esmd(work, agents, seconds, url, variants)
                    pg_raw = raw_insert_rate(url)
                    figures |= {
                        "pg_checkin_rate": round(pg["checkin"].rate),
                        "pg_checkin_ratio": round(pg["checkin"].rate / bare.rate, 3),
                        "pg_errors": pg["checkin"].errors + pg["ingest"].errors,
                        "pg_ingest_rate": round(pg["ingest"].rate * 100),
                        "pg_raw_insert_rate": round(pg_raw),
                        "pg_ingest_ratio": round(pg["ingest"].rate * 100 / pg_raw, 3),
                    }
        load.append(os.getloadavg()[0])
        figures["load"] = load
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--telemetry-variants",
        type=int,
        default=1,
        help="outbox depths each agent's check-ins cycle through (1: identical bodies)",
    )
    args = parser.parse_args()
    figures = measure(args.seconds, args.agents, not args.no_postgres, args.telemetry_variants)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
