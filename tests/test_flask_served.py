"""``luathrottle.flask`` under gunicorn with three worker processes on one
Redis: however the requests are shared out, each key is admitted exactly
its limit."""

import concurrent.futures
import uuid

import pytest

from luathrottle import Limiter
from luathrottle.backends.redis import SyncRedis
from servers import get, gunicorn

pytestmark = pytest.mark.redis

LIMIT = 5


@pytest.fixture
def served(redis_url, tmp_path):
    scope = f"flask-served-{uuid.uuid4().hex}"
    env = {"LUATHROTTLE_REDIS_URL": redis_url, "LUATHROTTLE_TEST_SCOPE": scope}
    with gunicorn("flask_app:app", env, tmp_path / "gunicorn.log", 3) as port:
        yield port, scope


def test_workers_admit_each_key_exactly_its_limit(served, redis_url):
    port, scope = served
    workers = set()
    counted = {}
    # However the kernel shares the connections out, several workers serve
    # some within a few rounds; each round's keys are new.
    for index in range(20):
        keys = [f"k{n}-{index}" for n in range(4)]
        paths = [f"/hit/{key}" for key in keys for _ in range(3 * LIMIT)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda path: get(port, path), paths))
        workers |= {headers["X-Pid"] for _, headers, _ in answers}
        for path, (status, _, _) in zip(paths, answers, strict=True):
            counted.setdefault(path, []).append(status)
        if len(workers) >= 2:
            break
    assert len(workers) >= 2
    for statuses in counted.values():
        assert statuses.count(200) == LIMIT
        assert statuses.count(429) == 2 * LIMIT
    limiter = Limiter(LIMIT, 86400, backend=SyncRedis.from_url(redis_url), scope=scope)
    key = next(iter(counted)).removeprefix("/hit/")
    assert limiter.peek(key).remaining == 0
