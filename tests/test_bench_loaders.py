"""The benchmark's two loaders count alike on one app: wrk, and the h11
client used where wrk is missing. Each loads a view answering chunked, one
answering with Content-Length, and one answering 429, and its figures must
agree with the requests the server counted.

wrk is installed by ``.ci/run`` and ``scripts/test.sh``, so under CI its
half of the test must run; elsewhere it is skipped when wrk is missing.
"""

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from _bench_e2e import CONNECTIONS, Loader, serve  # noqa: E402

SECONDS = 1.0
LOADERS = ["python", "wrk"]
#: Path: whether every response is an error (429).
PATHS = {"chunked/": False, "length/": False, "denied/": True}


def counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count/", timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    log = tmp_path_factory.mktemp("loader") / "uvicorn.log"
    with serve("loader_app:application", ROOT / "tests", log) as port:
        yield port


@pytest.mark.parametrize("choice", LOADERS)
def test_loaders_count_requests_and_errors_as_the_server_does(port, choice):
    if choice == "wrk" and shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk must be installed under CI (.ci/run installs it)")
        pytest.skip("wrk is not installed")
    loader = Loader(choice)
    for path, all_errors in PATHS.items():
        before = counts(port).get(f"/{path}", 0)
        load = loader.load(port, path, SECONDS)
        served = counts(port)[f"/{path}"] - before
        assert load.requests > 0, path
        # A response still in flight when the load stops was served but not
        # read: at most one per connection.
        assert served - CONNECTIONS <= load.requests <= served, (path, load, served)
        assert load.errors == (load.requests if all_errors else 0), (path, load)
