"""The Django app: add ``"luathrottle.django"`` to ``INSTALLED_APPS``."""

from django.apps import AppConfig
from django.core import checks

__all__ = ["LuathrottleConfig"]


class LuathrottleConfig(AppConfig):
    """Registers the system checks (tag ``luathrottle``; the URLconf's also
    under ``urls``)."""

    name = "luathrottle.django"
    label = "luathrottle"
    verbose_name = "luathrottle"

    def ready(self) -> None:
        """Register ``check_settings``, ``check_views`` and ``check_caches``,
        and follow ``LUATHROTTLE``'s off switch and observers from the
        start."""
        from luathrottle.django._conf import apply_settings
        from luathrottle.django.checks import check_caches, check_settings, check_views

        checks.register(check_settings, "luathrottle")
        checks.register(check_views, "luathrottle", checks.Tags.urls)
        checks.register(check_caches, "luathrottle", checks.Tags.caches)
        apply_settings()
