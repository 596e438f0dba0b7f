"""Only the wake-channel measurement of `make bench` (bench/run.py's ``measure_wake``).

    python bench/wake_only.py [--agents 10000] [--sqlite] [--pg]

Prints one JSON line per run (SQLite: one esmd; PostgreSQL: two), with the load average
before and after. Without --sqlite or --pg, both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg import fresh_database
from run import measure_wake
from wake_sim import raise_fd_limit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--pg", action="store_true")
    args = parser.parse_args()
    both = not (args.sqlite or args.pg)
    raise_fd_limit(4 * args.agents + 1024)
    with tempfile.TemporaryDirectory(prefix="traps-wake-") as tmp:
        work = Path(tmp)
        runs = []
        if args.sqlite or both:
            runs.append(None)
        if args.pg or both:
            runs.append("pg")
        for kind in runs:
            before = os.getloadavg()
            if kind is None:
                result = measure_wake(work, args.agents)
            else:
                with fresh_database() as url:
                    if url is None:
                        sys.stderr.write("wake_only: no PostgreSQL reachable\n")
                        return 1
                    result = measure_wake(work, args.agents, url)
            result["load"] = [round(before[0], 1), round(os.getloadavg()[0], 1)]
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
