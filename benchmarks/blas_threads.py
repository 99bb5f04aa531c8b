"""Why serving runs BLAS on one thread (`create_app`, via `ranking.model.limit_threads`):
Thompson sampling's product of a request's driver terms by its posterior draws, timed with
OpenBLAS's default threads and with one, on an idle machine and with every core kept busy by
another process (as other gunicorn workers and Redis keep them).

    .venv/bin/python -m benchmarks.blas_threads [--rows 2400] [--calls 300]

Prints the median and p99 per product, in ms, for each of the four cases.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ranking import online
from ranking.features import N_FEATURES


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def time_product(rows: int, calls: int, draws: int = 33) -> tuple[float, float]:
    """Median and p99 (ms) of `driver_terms(features) @ spread`, as `LearnedRanker.draws`
    computes it for `rows` candidates."""
    rng = np.random.default_rng(0)
    features = np.asfortranarray(rng.random((rows, N_FEATURES)))  # as raw_to_features lays out
    spread = rng.standard_normal((online.N_TERMS, draws))
    times = []
    for i in range(calls + 20):
        start = time.perf_counter()
        online.driver_terms(features) @ spread
        if i >= 20:
            times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times)), float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blas_threads")
    parser.add_argument("--rows", type=int, default=2400, help="candidates (50 km: ~2,400)")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    default = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    print(f"{os.cpu_count()} cores; OpenBLAS default {default} threads; {args.rows} rows")
    for busy in (False, True):
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=_spin, args=(stop,))
                    for _ in range(os.cpu_count() if busy else 0)]
        for spinner in spinners:
            spinner.start()
        try:
            for threads in (default, 1):
                with threadpool_limits(threads, user_api="blas"):
                    p50, p99 = time_product(args.rows, args.calls)
                print(f"{'busy' if busy else 'idle'} cores, {threads} BLAS thread(s): "
                      f"p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        finally:
            stop.set()
            for spinner in spinners:
                spinner.join()


if __name__ == "__main__":
    main()
