"""The luathrottle command, in-process and as the installed console script."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from luathrottle.cli import main
from luathrottle.scripts import all_scripts

ROOT = Path(__file__).resolve().parents[1]


def run(*argv):
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def test_scripts_list_prints_name_version_and_sha():
    status, output = run("scripts", "list")
    assert status == 0
    assert output.splitlines() == [
        f"{script.name}\tv{script.version}\t{script.sha}" for script in all_scripts()
    ]


def test_check_fails_until_load_then_passes(redis_url, redis_client):
    redis_client.script_flush()
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 1
    assert output.count("MISSING") == len(all_scripts())
    status, output = run("scripts", "load", "--url", redis_url)
    assert status == 0
    assert all(script.sha in output for script in all_scripts())
    assert redis_client.script_exists(*(s.sha for s in all_scripts())) == [True] * 2
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 0
    assert "MISSING" not in output


def test_check_reports_an_unreachable_server(capsys):
    status, _ = run("scripts", "check", "--url", "redis://127.0.0.1:1/0")
    assert status == 2
    assert "luathrottle:" in capsys.readouterr().err


def test_demo_on_the_embedded_backend_goes_past_the_limit():
    status, output = run("demo")
    assert status == 0
    assert output.count("HTTP/1.1 200 OK") == 3
    assert output.count("HTTP/1.1 429 Too Many Requests") == 2
    assert "X-RateLimit-Remaining: 0" in output
    assert "Retry-After: 10" in output


def test_demo_against_redis(redis_url, redis_client):
    status, output = run("demo", "--redis", redis_url)
    assert status == 0
    assert output.count("429 Too Many Requests") == 2


@pytest.mark.parametrize(
    "command",
    [
        ["luathrottle", "scripts", "list"],
        [sys.executable, str(ROOT / "scripts" / "preload_lua.py"), "list"],
    ],
)
def test_console_script_and_preload_twin(command):
    if command[0] == "luathrottle":
        command[0] = str(Path(sys.executable).with_name("luathrottle"))
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=True
    )
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        "fixed_window",
        "leaky_bucket",
    ]
