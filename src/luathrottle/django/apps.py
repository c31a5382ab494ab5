"""The Django app: add ``"luathrottle.django"`` to ``INSTALLED_APPS``."""

from django.apps import AppConfig
from django.core import checks

__all__ = ["LuathrottleConfig"]


class LuathrottleConfig(AppConfig):
    """Registers the settings checks (tag ``luathrottle``)."""

    name = "luathrottle.django"
    label = "luathrottle"
    verbose_name = "luathrottle"

    def ready(self) -> None:
        """Register ``check_settings``."""
        from luathrottle.django.checks import check_settings

        checks.register(check_settings, "luathrottle")
