"""Why a request's Redis round trips cost more than a PING in a loop: a round trip made after
the client has computed for a while (as a recommendation reads the index after choosing cells,
and checks its shortlist after scoring) waits for a Redis that has gone idle.

    .venv/bin/python -m benchmarks.round_trip_gap [--calls 300] [--gaps 0 1 2 5 10]

Starts a throwaway `redis-server`, then times redis-py's PING, each call right after the
client has kept its CPU busy for a gap of that many milliseconds (0: back to back). Prints the
median and p99 per gap, in ms.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import redis

from offers.redis_server import RedisServer


def busy(ms: float) -> None:
    """Keep this process's CPU busy (not asleep) for `ms` milliseconds."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def ping_after(client: redis.Redis, gap_ms: float, calls: int) -> tuple[float, float]:
    """Median and p99 (ms) of a PING made `gap_ms` after the last reply."""
    times = []
    for i in range(calls + 20):
        busy(gap_ms)
        start = time.perf_counter()
        client.ping()
        if i >= 20:
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), 1000 * float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.round_trip_gap")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--gaps", type=float, nargs="+", default=[0, 1, 2, 5, 10])
    args = parser.parse_args(argv)
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)
        print(f"redis-py PING after the client computed for a gap; {args.calls} calls each")
        print(f"{'gap ms':>8}{'p50 ms':>10}{'p99 ms':>10}")
        for gap in args.gaps:
            p50, p99 = ping_after(client, gap, args.calls)
            print(f"{gap:8g}{p50:10.3f}{p99:10.3f}")
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
