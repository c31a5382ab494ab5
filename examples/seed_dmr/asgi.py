"""ASGI entry point: ``python -m uvicorn seed_dmr.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "seed_dmr.settings")

application = get_asgi_application()
