"""The Django project the end-to-end benchmark serves with uvicorn.

``bench_app.asgi:application``, with its cache and Redis throttles on the
server at ``BENCH_REDIS_URL``. Its views return the same body; they differ
only in their throttles (``bench_app.urls``).
"""
