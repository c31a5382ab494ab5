"""What an operator reads before adopting: every front door's guide in the
docs states its failure policy by default, and the demo's servers come
with an extra."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide"

#: Each front door's guide, and the heading its section starts at.
SECTIONS = {
    "django": ("django.md", "# Django\n"),
    "drf": ("drf.md", "# Django REST framework: `luathrottle.drf`\n"),
    "dmr": ("dmr.md", "# django-modern-rest: `luathrottle.dmr`\n"),
    "asgi": ("asgi.md", "# ASGI: `luathrottle.asgi.RateLimitMiddleware`\n"),
    "fastapi": ("fastapi.md", "# FastAPI: `luathrottle.fastapi.Throttle`\n"),
    "flask": ("flask.md", "# Flask: `luathrottle.flask.Throttle`\n"),
}


def section(page: str, heading: str) -> str:
    """The text under ``heading`` in a guide, up to its next section; a
    ``# comment`` in a code block is no heading, so only ``## `` ends it."""
    text = (GUIDE / page).read_text(encoding="utf-8").split(heading, 1)[1]
    return re.split(r"\n## ", text, maxsplit=1)[0]


@pytest.mark.parametrize("door", SECTIONS)
def test_every_adapter_states_its_failure_policy_by_default(door):
    text = " ".join(section(*SECTIONS[door]).split())
    assert re.search(r"fails? open by default", text), door


def test_the_demo_servers_come_with_an_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(item.startswith("uvicorn") for item in extras["demo"])
    assert "pip install 'luathrottle[demo]'" in section(
        "django.md", "## The seed example project\n"
    )
