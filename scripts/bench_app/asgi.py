"""ASGI entry point: ``python -m uvicorn bench_app.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_app.settings")

application = get_asgi_application()
