"""Prometheus metrics from two gunicorn workers, in prometheus-client's
multiprocess mode: each worker counts in its own files, and a scrape of any
worker sums them, equal to what was sent and to what the store holds."""

import concurrent.futures
import shutil
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from luathrottle import LeakyBucket, Limit, Limiter
from luathrottle.backends.redis import SyncRedis
from servers import get, gunicorn

pytestmark = pytest.mark.redis

#: As tests/prometheus_wsgi.py limits each key.
LIMIT = Limit(5, 86400)
#: Requests of one round, per key: one key stays under the limit.
ROUND = {"few": 3, "many": 9, "most": 12}


@pytest.fixture
def served(redis_url, tmp_path_factory):
    """gunicorn with two workers on a fresh multiprocess directory, and the
    scope of the limiter its workers hit."""
    files = tmp_path_factory.mktemp("prometheus-multiproc")
    scope = f"prometheus-{uuid.uuid4().hex}"
    env = {
        "LUATHROTTLE_REDIS_URL": redis_url,
        "LUATHROTTLE_TEST_SCOPE": scope,
        "PROMETHEUS_MULTIPROC_DIR": str(files),
    }
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    config = ("--config", "python:prometheus_gunicorn")
    try:
        with gunicorn("prometheus_wsgi:application", env, log, 2, *config) as port:
            yield port, files, scope
    finally:
        shutil.rmtree(files, ignore_errors=True)


def send_round(port, keys):
    """Each key's requests of a round, four at a time so that both workers
    are kept busy; each answer's status and worker."""
    paths = [f"/hit?key={key}" for key, count in keys.items() for _ in range(count)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda path: get(port, path), paths))
    return [(status, headers["X-Pid"]) for status, headers, _ in answers]


def test_two_workers_count_every_decision_once(served, redis_url):
    port, files, scope = served
    sent: dict[str, int] = {}
    answers = []
    # However the kernel shares the connections out, both workers serve some
    # within a few rounds; each round's keys are new.
    for index in range(20):
        keys = {f"{key}-{index}": count for key, count in ROUND.items()}
        answers += send_round(port, keys)
        sent.update(keys)
        if len({pid for _, pid in answers}) == 2:
            break
    workers = {pid for _, pid in answers}
    assert len(workers) == 2
    admitted = sum(min(count, LIMIT.max_requests) for count in sent.values())
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == admitted
    assert statuses.count(429) == len(answers) - admitted

    metrics = {
        family.name: family
        for family in text_string_to_metric_families(get(port, "/metrics")[2].decode())
    }
    by_outcome: dict[str, float] = {}
    for sample in metrics["luathrottle_decisions"].samples:
        assert sample.labels["door"] == "limiter"
        outcome = sample.labels["outcome"]
        by_outcome[outcome] = by_outcome.get(outcome, 0) + sample.value
    assert by_outcome == {"admitted": admitted, "denied": len(answers) - admitted}
    timed = [
        sample.value
        for sample in metrics["luathrottle_store_seconds"].samples
        if sample.name == "luathrottle_store_seconds_count"
    ]
    assert timed == [len(answers)]
    # Each worker counted in files of its own.
    counted_by = {path.stem.split("_")[-1] for path in files.glob("counter_*.db")}
    assert counted_by == workers

    store = Limiter(
        [LIMIT],
        algorithm=LeakyBucket(),
        backend=SyncRedis.from_url(redis_url),
        scope=scope,
    )
    held = sum(LIMIT.max_requests - store.peek(key).remaining for key in sent)
    assert held == admitted
    for key in sent:
        store.reset(key)
