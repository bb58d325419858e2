"""How long after a revocation's commit another connection's change feed knows of it (PostgreSQL).

    python bench/notify_latency.py [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--n 30]

Two storages on one database (two engines: two processes' worth of connections); the feed listens on the
first, the second issues and revokes tokens. Reported: milliseconds from the revoking call's return until the
feed's `tokens` version moved (0: it had moved before the call returned). Creates and drops a temporary
database. Writes `bench/results/notify_latency.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import psycopg

    from nas.db.change_feed import ChangeFeed
    from nas.db.storage import open_storage
    from nas.service import issue_token

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "notify_latency.json")
    args = parser.parse_args()
    admin = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"hwnas_notify_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = args.database_url.rsplit("/", 1)[0] + "/" + name
    try:
        listening, writing = open_storage(url), open_storage(url)
        feed = ChangeFeed(listening.engine)
        feed.start()
        assert feed.wait_live(5), "the feed did not start listening"
        latencies_ms = []
        for i in range(args.n):
            token_id, _ = issue_token(writing, name=f"t{i}", scope="read")
            time.sleep(0.05)  # the issue's own notification arrives first
            before = feed.version("tokens")
            writing.revoke_token(token_id)
            returned = time.perf_counter()
            while feed.version("tokens") == before:
                time.sleep(0.0001)
            latencies_ms.append((time.perf_counter() - returned) * 1000)
        feed.stop()
        listening.engine.dispose()
        writing.engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {platform.python_version()}",
              "n": args.n, "median_ms": round(statistics.median(latencies_ms), 3),
              "max_ms": round(max(latencies_ms), 3), "latencies_ms": [round(x, 3) for x in latencies_ms]}
    print(f"feed saw the revocation {result['median_ms']} ms (median), {result['max_ms']} ms (max) after the "
          "revoking call returned")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
