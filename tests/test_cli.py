"""The luathrottle command, in-process and as the installed console script."""

import io
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from luathrottle.cli import main
from luathrottle.scripts import all_scripts
from servers import RedisSentinel, free_port

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
    ] + [
        f"library\t{script.library.name}\t{function}"
        for script in all_scripts()
        for function in script.library.functions
    ]


def test_check_fails_until_load_then_passes(redis_url, redis_client):
    redis_client.script_flush()
    redis_client.function_flush()
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 1
    assert output.count("MISSING") == 2 * len(all_scripts())
    for script in all_scripts():
        assert f"\tMISSING\tlibrary\t{script.library.name}\n" in output
    status, output = run("scripts", "load", "--url", redis_url)
    assert status == 0
    assert all(script.sha in output for script in all_scripts())
    for script in all_scripts():
        assert f"\tloaded\tlibrary\t{script.library.name}\n" in output
    assert redis_client.script_exists(*(s.sha for s in all_scripts())) == [True] * len(
        all_scripts()
    )
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 0
    assert "MISSING" not in output
    for script in all_scripts():
        assert f"\tok\tlibrary\t{script.library.name}\n" in output
    # A client that decodes replies gets FUNCTION LIST as text.
    decoding = f"{redis_url}?decode_responses=true"
    assert run("scripts", "check", "--url", decoding) == (0, output)
    # Loading again leaves every library as it is: none is replaced.
    status, output = run("scripts", "load", "--url", redis_url)
    assert status == 0
    for script in all_scripts():
        assert f"\tpresent\tlibrary\t{script.library.name}\n" in output


def test_a_server_serving_from_its_libraries_is_healthy(redis_url, redis_client):
    run("scripts", "load", "--url", redis_url)
    # As after a restart that kept the libraries: the script cache is empty.
    redis_client.script_flush()
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 0
    assert "MISSING" not in output
    for script in all_scripts():
        assert (
            f"\tunneeded\t{script.name}\t{script.sha}\tserved by library "
            f"{script.library.name}\n"
        ) in output
        assert f"\tok\tlibrary\t{script.library.name}\n" in output


@pytest.mark.timeout(4)
def test_timeout_bounds_the_wait_for_a_server_that_never_answers():
    # Listening, so the connection is made, and never answering: without
    # --timeout the command waits 5 seconds, past this test's 4.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    try:
        status, _ = run("scripts", "check", "--url", url, "--timeout", "0.2")
    finally:
        silent.close()
    assert status == 2


def test_check_reports_only_the_library_missing(redis_url, redis_client):
    run("scripts", "load", "--url", redis_url)
    redis_client.function_flush()
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 1
    missing = [line for line in output.splitlines() if "MISSING" in line]
    assert [line.split("\t")[-1] for line in missing] == [
        script.library.name for script in all_scripts()
    ]
    # Another build's libraries, none of them this build's, are no help.
    redis_client.function_load(
        "#!lua name=luathrottle\nredis.register_function('lt_old', "
        "function() return 1 end)"
    )
    redis_client.function_load(
        "#!lua name=luathrottle_fw5_000000000000\n"
        "redis.register_function('luathrottle_fw5_000000000000', "
        "function() return 1 end)"
    )
    status, output = run("scripts", "check", "--url", redis_url)
    assert status == 1
    assert output.count("\tMISSING\tlibrary\t") == len(all_scripts())


def test_servers_or_users_without_functions_skip_the_library(redis_url, redis_client):
    redis_client.acl_setuser(
        "nofunctions",
        enabled=True,
        nopass=True,
        keys=["~*"],
        commands=["+@all", "-function"],
    )
    url = redis_url.replace("redis://", "redis://nofunctions:x@")
    status, output = run("scripts", "load", "--url", url)
    assert status == 0
    skipped = [
        f"\tskipped\tlibrary\t{script.library.name}\tforbidden by the ACL"
        for script in all_scripts()
    ]
    assert all(line in output for line in skipped)
    status, output = run("scripts", "check", "--url", url)
    assert status == 0
    assert all(line in output for line in skipped)
    status, output = run("scripts", "prune", "--url", url)
    assert status == 0
    assert output.endswith("\tskipped\tlibraries\tforbidden by the ACL\n")
    redis_client.acl_deluser("nofunctions")


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


def test_valkey_urls_reach_the_same_server(redis_url, redis_client):
    # valkey-py's URL schemes name a server redis-py speaks to as well.
    redis_client.function_flush()
    url = redis_url.replace("redis://", "valkey://")
    assert run("scripts", "load", "--url", url)[0] == 0
    status, output = run("scripts", "check", "--url", url)
    assert (status, output.count("\tok\t")) == (0, 2 * len(all_scripts()))
    status, output = run("demo", "--redis", url)
    assert (status, output.count("429 Too Many Requests")) == (0, 2)


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
    listed = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert listed == [script.name for script in all_scripts()] + ["library"] * (
        2 * len(all_scripts())
    )
    assert {
        "concurrency",
        "fixed_window",
        "leaky_bucket",
        "sliding_window",
        "token_bucket",
    } <= set(listed)


# Failures, as a shell or a health check sees them: the installed console
# script and ``python -m luathrottle`` in processes of their own.

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("luathrottle"))
PYTHON_M = (sys.executable, "-m", "luathrottle")


def shell(*argv, command=(CONSOLE_SCRIPT,), cwd=None):
    return subprocess.run(
        [*command, *argv], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def assert_one_line_error(result, status, *fragments):
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("luathrottle: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def dead_url():
    """A loopback port nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["scripts", "check", "--url", "notaurl"], ["--url 'notaurl'", "redis://"]),
        (["scripts", "check", "--url", "http://127.0.0.1:6379/0"], ["--url 'http"]),
        (["scripts", "load", "--url", "redis://127.0.0.1:99999/0"], ["Port"]),
        (["demo", "--redis", "notaurl"], ["--redis 'notaurl'"]),
        (["scripts", "check"], ["--url", "see luathrottle scripts check -h"]),
        (["bogus"], ["invalid choice: 'bogus'"]),
        (["scripts", "check", "--url", "redis://127.0.0.1:1/0", "--bogus"], []),
        (["scripts", "check", "--url", "redis:///0", "--sentinel", "m"], ["host"]),
        (["scripts", "check", "--url", "redis:///0", "--timeout", "0"], ["above 0"]),
        (["demo", "--redis", "redis:///0", "--timeout", "soon"], ["'soon'"]),
    ],
    ids=[
        "not-a-url",
        "http-url",
        "port-out-of-range",
        "demo-not-a-url",
        "missing-url",
        "unknown-command",
        "unknown-option",
        "sentinel-without-host",
        "timeout-zero",
        "timeout-not-a-number",
    ],
)
def test_usage_errors_exit_2_in_one_line(argv, fragments):
    assert_one_line_error(shell(*argv), 2, *fragments)


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["scripts", "check", "--url", "{url}"], ["connecting to", "refused"]),
        (["scripts", "load", "--url", "{url}", "--cluster"], ["Cluster"]),
        (
            ["scripts", "check", "--url", "{url}", "--sentinel", "mymaster"],
            ["cannot reach the Sentinel"],
        ),
        (["demo", "--redis", "{url}"], ["{url}", "refused"]),
        (["scripts", "load", "--url", "unix:///nonexistent/redis.sock"], ["sock"]),
    ],
    ids=["check", "cluster", "sentinel", "demo", "unix-socket"],
)
def test_unreachable_servers_exit_2_in_one_line(dead_url, argv, fragments):
    argv = [item.format(url=dead_url) for item in argv]
    fragments = [item.format(url=dead_url) for item in fragments]
    assert_one_line_error(shell(*argv), 2, *fragments)


def test_servers_of_the_wrong_kind_exit_2_in_one_line(redis_url):
    # The harness's server is neither a Sentinel nor a cluster node.
    result = shell("scripts", "check", "--url", redis_url, "--sentinel", "mymaster")
    assert_one_line_error(result, 2, "is not a Sentinel")
    result = shell("scripts", "check", "--url", redis_url, "--cluster")
    assert_one_line_error(result, 2, "luathrottle: error: ")


def test_an_unknown_sentinel_name_exits_2_in_one_line(redis_url, tmp_path):
    primary_port = urllib.parse.urlsplit(redis_url).port
    sentinel = RedisSentinel(
        shutil.which("redis-server"), str(tmp_path), primary_port, "primary"
    )
    sentinel.start()
    try:
        url = f"redis://127.0.0.1:{sentinel.port}"
        result = shell("scripts", "check", "--url", url, "--sentinel", "other")
    finally:
        sentinel.stop()
    assert_one_line_error(
        result, 2, "knows no primary named 'other'", "(it knows: primary)"
    )


def test_missing_scripts_exit_1_then_0_after_load(redis_url, redis_client):
    redis_client.script_flush()
    redis_client.function_flush()
    for command in ((CONSOLE_SCRIPT,), PYTHON_M):
        result = shell("scripts", "check", "--url", redis_url, command=command)
        assert_one_line_error(result, 1, "missing", "scripts load")
        assert result.stdout.count("\tMISSING\t") == 2 * len(all_scripts())
    loaded = shell("scripts", "load", "--url", redis_url)
    assert (loaded.returncode, loaded.stderr) == (0, "")
    for command in ((CONSOLE_SCRIPT,), PYTHON_M):
        result = shell("scripts", "check", "--url", redis_url, command=command)
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout.count("\tok\t") == 2 * len(all_scripts())


def test_python_m_and_the_preload_twin_fail_as_the_console_script_does():
    for command in (
        PYTHON_M,
        (sys.executable, str(ROOT / "scripts" / "preload_lua.py")),
    ):
        prefix = () if "preload_lua.py" in command[-1] else ("scripts",)
        result = shell(*prefix, "check", "--url", "notaurl", command=command)
        assert_one_line_error(result, 2, "--url 'notaurl'")


@pytest.mark.parametrize("argv", [["--help"], ["scripts", "check", "--help"]])
def test_help_is_plain_text_and_lists_the_exit_statuses(argv):
    result = shell(*argv)
    assert (result.returncode, result.stderr) == (0, "")
    assert "``" not in result.stdout
    assert "\nexit status:\n" in result.stdout
    for line in (
        "  0  success",
        "  1  check: a function library is missing on a server that has",
        "  2  usage or configuration error",
    ):
        assert f"\n{line}" in result.stdout
