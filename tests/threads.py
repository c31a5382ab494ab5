"""Hits from several threads at once, for the tests that count them."""

import threading


def hit_from_threads(limiter, threads, hits):
    """``hits`` hits of one key from each of ``threads`` threads at once."""

    def hit_many():
        for _ in range(hits):
            limiter.hit("k")

    started = [threading.Thread(target=hit_many) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=120)
