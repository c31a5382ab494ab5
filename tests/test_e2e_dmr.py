"""The chapter's examples on real django-modern-rest controllers
(``examples/seed_dmr``), their throttles ported by import to
``luathrottle.dmr``, served by uvicorn with two workers on the harness's
Redis, answer every "Run result" as ``test_e2e_seed`` checks it.

dmr 0.16 uses the most specific level that sets throttling rather than
joining the levels, so a controller with throttles of its own does not
also count on the settings' throttle: only the stored keys differ.
"""

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from test_e2e_seed import (
    EXAMPLES,
    ONE_SECOND_ATTEMPTS,
    SESSIONS,
    Server,
    database_url,
    free_port,
    replay,
    stop,
    wait_until_up,
)

#: A database of the harness's server that no other test uses or flushes.
DMR_DB = 13

pytestmark = pytest.mark.redis

#: Keys stored in dmr, where the settings' throttle is not joined.
DMR_STORED = {
    "Backends: the 'throttling' Django cache": {"seed-throttling:*": 1, "seed:*": 0},
    "Backends: a Redis client of your own": {
        "lt:*": 1,
        "seed-redis:*": 0,
        "seed:*": 0,
    },
}
#: dmr answers a POST 201 by default; the chapter prints no run of it.
CREATED = "Algorithms: LeakyBucket on a login endpoint"


def for_dmr(session):
    steps = session.steps
    if session.title == CREATED:
        steps = tuple(
            dataclasses.replace(step, status=201) if step.status == 200 else step
            for step in steps
        )
    stored = DMR_STORED.get(session.title, session.stored)
    return dataclasses.replace(session, steps=steps, stored=stored)


DMR_SESSIONS = tuple(for_dmr(item) for item in SESSIONS)


@pytest.fixture(scope="module")
def dmr_server(redis_url, tmp_path_factory) -> Iterator[Server]:
    url = database_url(redis_url, DMR_DB)
    store: redis.Redis[bytes] = redis.Redis.from_url(url, socket_timeout=10)
    store.flushdb()
    pythonpath = os.pathsep.join(
        filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")])
    )
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "LUATHROTTLE_REDIS_URL": url,
        "DJANGO_SETTINGS_MODULE": "seed_dmr.settings",
    }
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    for _attempt in range(3):
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "uvicorn", "seed_dmr.asgi:application"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--workers", "2", "--log-level", "warning"),
                ],
                cwd=EXAMPLES,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if wait_until_up(process, port, log):
                break
        except BaseException:
            stop(process)
            raise
    else:
        pytest.fail(f"uvicorn did not start:\n{log.read_text()}")
    try:
        yield Server(port, store, log)
    finally:
        stop(process)
        store.close()


@pytest.mark.parametrize(
    "session", DMR_SESSIONS, ids=[item.title for item in DMR_SESSIONS]
)
def test_dmr_session_answers_as_the_seed_prints(dmr_server, session):
    for _attempt in range(ONE_SECOND_ATTEMPTS):
        problems, elapsed = replay(dmr_server, session)
        if not session.one_second or elapsed < 1.0:
            break
    else:
        pytest.fail(f"the machine never answered {session.title!r} within 1s")
    log = dmr_server.log.read_text()
    assert not problems, "\n".join([*problems, log[-2000:]])
