"""The FastAPI apps ``_bench_fastapi`` serves with uvicorn, one per library
(``luathrottle_app``, ``slowapi_app``, ``fastapi_limiter_app``), each
throttling the same two routes on the Redis server at ``BENCH_REDIS_URL``
as its own documentation shows."""
