"""The README's two fresh-machine commands stay true: exactly two, each a
script of this repository, and the demo's runs the demo."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_machine_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Fresh machine: two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_the_readme_keeps_exactly_the_two_commands():
    assert fresh_machine_commands() == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for command in fresh_machine_commands():
        assert (ROOT / command.split()[1]).is_file(), command


def test_demo_script_runs_the_demo_and_says_what_it_does():
    # The suite runs in the venv test.sh built, so the demo skips its build.
    result = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "request 4: HTTP/1.1 429 Too Many Requests" in result.stdout
    assert result.stderr.splitlines()[-1] == "==> luathrottle demo "


def test_ci_and_the_test_command_install_every_system_tool():
    tools = (ROOT / "scripts" / "system_tools.sh").read_text()
    for tool in ("redis-server", "redis-cli", "openssl", "wrk", "valgrind"):
        assert f"[{tool}]=" in tools, tool
    assert "bash scripts/system_tools.sh" in (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/system_tools.sh" in (ROOT / "scripts" / "test.sh").read_text()
