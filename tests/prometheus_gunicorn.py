"""gunicorn's settings for tests/prometheus_wsgi.py, as docs/metrics.md gives
them for multiprocess metrics."""

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges (the breakers') no longer count.
    multiprocess.mark_process_dead(worker.pid)
