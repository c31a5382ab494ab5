"""What an operator reads before adopting: every adapter's section of the
README states its failure policy by default, and the demo's servers come
with an extra."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: Each front door's section, by its heading.
SECTIONS = {
    "django": "## Django\n",
    "drf": "### Django REST framework: `luathrottle.drf`\n",
    "dmr": "### django-modern-rest: `luathrottle.dmr`\n",
    "asgi": "### ASGI: `luathrottle.asgi.RateLimitMiddleware`\n",
    "fastapi": "### FastAPI: `luathrottle.fastapi.Throttle`\n",
    "flask": "### Flask: `luathrottle.flask.Throttle`\n",
}


def section(heading: str) -> str:
    text = README.split(heading, 1)[1]
    return re.split(r"\n#{2,3} ", text, maxsplit=1)[0]


@pytest.mark.parametrize("door", SECTIONS)
def test_every_adapter_states_its_failure_policy_by_default(door):
    text = " ".join(section(SECTIONS[door]).split())
    assert re.search(r"fails? open by default", text), door


def test_the_demo_servers_come_with_an_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(item.startswith("uvicorn") for item in extras["demo"])
    assert "pip install 'luathrottle[demo]'" in section(
        "### The seed example project\n"
    )
