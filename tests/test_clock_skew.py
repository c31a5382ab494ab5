"""App servers whose clocks are 30 s off change no decision on the server clock.

Each app server is a spawned process whose clocks run -30 s, 0 s or +30 s
off (see skew_worker.py), all on the harness's real Redis. On the server's
clock (the default) their admissions together are exact, and the reset and
retry times they report are the same instants. With a client clock
(``clock=time.time``) the same processes disagree: reported times move with
each process's skew, and a fast clock after a slow one leaks a LeakyBucket
early, admitting more than the limit.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

import skew_worker

pytestmark = pytest.mark.redis

SKEWS = (-30.0, 0.0, 30.0)
#: Seconds two processes' reports may differ by: calls made at different
#: moments on a loaded machine; far below the 30 s of skew.
TOLERANCE = 3.0
WAIT = 120


@pytest.fixture(scope="module")
def app_servers():
    """One spawned process per skew, reused by every test here."""
    context = multiprocessing.get_context("spawn")
    pools = {
        skew: ProcessPoolExecutor(
            1,
            mp_context=context,
            initializer=skew_worker.shift_clocks,
            initargs=(skew,),
        )
        for skew in SKEWS
    }
    yield pools
    for pool in pools.values():
        pool.shutdown(cancel_futures=True)


def on_each(pools, function, *args):
    """Call ``function`` in every app server at once; results by skew."""
    futures = {skew: pool.submit(function, *args) for skew, pool in pools.items()}
    return {skew: future.result(WAIT) for skew, future in futures.items()}


@pytest.mark.parametrize("algorithm", ["simple", "leaky"])
def test_skewed_app_servers_agree_on_the_server_clock(
    app_servers, redis_url, redis_client, algorithm
):
    settings = (redis_url, algorithm, 12, 3600, False)
    admitted = on_each(app_servers, skew_worker.hit, *settings, "shared", 10)
    assert sum(admitted.values()) == 12  # 30 attempts against a limit of 12

    reports = on_each(app_servers, skew_worker.peek, *settings, "shared")
    unskewed = reports[0.0]
    for skew, report in reports.items():
        assert report["clock_offset"] == pytest.approx(skew, abs=TOLERANCE)
        assert report["allowed"] is False
        assert report["reset_at"] == pytest.approx(unskewed["reset_at"], abs=TOLERANCE)
        assert report["retry_at"] == pytest.approx(unskewed["retry_at"], abs=TOLERANCE)


def test_client_clocks_move_reported_times_by_their_skew(
    app_servers, redis_url, redis_client
):
    settings = (redis_url, "simple", 12, 3600, True)
    admitted = on_each(app_servers, skew_worker.hit, *settings, "shared", 10)
    # A fixed window of an hour still counts exactly: every skewed "now" falls
    # inside it. What each process reports is another matter.
    assert sum(admitted.values()) == 12

    reports = on_each(app_servers, skew_worker.peek, *settings, "shared")
    unskewed = reports[0.0]["reset_at"]
    for skew, report in reports.items():
        # A process whose clock runs ahead thinks the window ends sooner.
        assert report["reset_at"] - unskewed == pytest.approx(-skew, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("client_clock", "admitted_late"),
    [(False, 0), (True, 2)],
    ids=["server_clock", "client_clock"],
)
def test_fast_clock_after_slow_clock_leaks_the_bucket_early(
    app_servers, redis_url, redis_client, client_clock, admitted_late
):
    # One request leaks every 30 s: the 60 s between the two clocks leak two.
    settings = (redis_url, "leaky", 120, 3600, client_clock)
    slow = app_servers[-30.0].submit(skew_worker.hit, *settings, "shared", 120)
    assert slow.result(WAIT) == 120  # filled to the brim
    fast = app_servers[30.0].submit(skew_worker.hit, *settings, "shared", 120)
    assert fast.result(WAIT) == admitted_late


def test_skewed_app_servers_hold_leases_exactly_on_the_store_clock(
    app_servers, redis_url, redis_client
):
    # One after the other, from the slowest clock to the fastest, 60 s apart
    # and three times the lease: on their own clocks, the fast one would
    # drop the slow one's lease as expired and hold a second slot.
    granted = [
        app_servers[skew]
        .submit(skew_worker.hold, redis_url, 1, 20, "shared")
        .result(WAIT)
        for skew in (-30.0, 0.0, 30.0)
    ]
    assert granted == [True, False, False]
