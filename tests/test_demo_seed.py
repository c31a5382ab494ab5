"""``luathrottle demo --seed``: the seed's sessions replayed in-process
against the example project, with no Redis, printed as the seed prints them.

The demo sets Django up itself, so it runs as the console script in a
process of its own; its output is checked against the expectations of
``test_e2e_seed``, the same sessions served by uvicorn.
"""

import http
import io
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from luathrottle.cli import main
from test_e2e_seed import (
    RATE_LIMIT_HEADERS,
    SEED_HEADERS,
    SESSIONS,
    Step,
    load_sessions_module,
    matches,
)

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("luathrottle")
ATTEMPTS = 3
HEADER_LINE = re.compile(r"([A-Za-z0-9-]+): (.*)")


@dataclass
class Shown:
    """What the demo printed for one curl command."""

    curl: str
    status_line: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None


def run_demo(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }
    # Nothing listens there: the demo must not need Redis.
    env["LUATHROTTLE_REDIS_URL"] = "redis://127.0.0.1:1/0"
    start = time.monotonic()
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "demo", "--seed", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - start


def parse(output: str) -> list[tuple[str, list[Shown]]]:
    """The demo's output as (title, steps) per session."""
    sessions: list[tuple[str, list[Shown]]] = []
    lines = output.splitlines()
    assert lines[0].startswith("# The seed's sessions, replayed in-process")
    for line in lines[1:]:
        if not line:
            continue
        if line.startswith("# "):
            sessions.append((line[2:], []))
        elif line.startswith("$ curl "):
            sessions[-1][1].append(Shown(line))
        else:
            step = sessions[-1][1][-1]
            header = HEADER_LINE.fullmatch(line)
            if line.startswith("HTTP/1.1 ") and step.status_line is None:
                step.status_line = line
            elif header and step.status_line is not None and step.body is None:
                step.headers.append((header[1], header[2]))
            else:
                assert step.body is None, f"two body lines: {line!r}"
                step.body = line
    return sessions


def curl(step: Step) -> str:
    url = f"http://127.0.0.1:8000{step.path}"
    if "?" in url:
        url = f"'{url}'"
    dump = " -D -" if step.show_headers else ""
    return f"$ curl {url}{dump} -X {step.method}"


def check_shown(step: Step, shown: Shown, elapsed: float) -> list[str]:
    problems: list[str] = []
    if shown.curl != curl(step):
        problems.append(f"printed {shown.curl!r}, not {curl(step)!r}")
    status_line = None
    if step.show_headers:
        status_line = f"HTTP/1.1 {step.status} {http.HTTPStatus(step.status).phrase}"
    if shown.status_line != status_line:
        problems.append(f"status line {shown.status_line!r}, not {status_line!r}")
    body = step.body.decode()  # curl prints the body, as the seed shows
    if shown.body != body:
        problems.append(f"body {shown.body!r}, not {body!r}")
    if not step.show_headers:
        return problems
    headers = dict(shown.headers)
    rate_limit = [name for name, _ in shown.headers if name in RATE_LIMIT_HEADERS]
    if [name for name, _ in shown.headers[: len(rate_limit)]] != rate_limit:
        problems.append(f"rate-limit headers are not first: {shown.headers}")
    for name in RATE_LIMIT_HEADERS:
        expected = step.headers.get(name)
        if expected is None and name in headers:
            problems.append(f"unexpected {name}: {headers[name]}")
        elif expected is not None and not matches(expected, headers.get(name), elapsed):
            problems.append(f"{name}: {headers.get(name)!r}, not {expected!r}")
    others = {name: value for name, value in SEED_HEADERS.items() if name != "server"}
    others["Content-Length"] = str(len(step.body))
    for name, value in others.items():
        if headers.get(name) != value:
            problems.append(f"{name}: {headers.get(name)!r}, not {value!r}")
    return problems


def demo_problems(output: str, elapsed: float) -> tuple[list[str], bool]:
    """Every mismatch, and whether all are in one-second sessions."""
    printed = parse(output)
    titles = [title for title, _ in printed]
    expected_titles = [
        session.title + ("" if in_seed else " (not in the seed)")
        for session, in_seed in zip(SESSIONS, IN_SEED, strict=True)
    ]
    if titles != expected_titles:
        return [f"sessions {titles}, not {expected_titles}"], False
    problems: list[str] = []
    only_one_second = True
    for session, (title, shown) in zip(SESSIONS, printed, strict=True):
        if len(shown) != len(session.steps):
            problems.append(f"{title}: {len(shown)} steps, not {len(session.steps)}")
            only_one_second &= session.one_second
            continue
        pairs = zip(session.steps, shown, strict=True)
        for number, (step, item) in enumerate(pairs, 1):
            found = check_shown(step, item, elapsed)
            problems.extend(f"{title}, step {number}: {text}" for text in found)
            only_one_second &= session.one_second or not found
    return problems, only_one_second


#: Which sessions the seed prints, as ``seed_project.sessions`` says.
IN_SEED = [session.in_seed for session in load_sessions_module().SESSIONS]


def test_demo_prints_every_session_as_the_seed_does():
    for _attempt in range(ATTEMPTS):
        result, elapsed = run_demo(cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        problems, only_one_second = demo_problems(result.stdout, elapsed)
        # A one-second window can only be missed on a machine that stalled.
        if not problems or not only_one_second:
            break
    assert not problems, "\n".join(problems) + "\n\n" + result.stdout


def test_demo_prints_the_seeds_own_blocks():
    """Spot checks on the text itself, independent of the parser above."""
    result, _ = run_demo(cwd=ROOT)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    method_level = next(b for b in blocks if "method level, sync" in b)
    assert method_level.splitlines()[1:8] == [
        "$ curl http://127.0.0.1:8000/api/method-level/sync/ -X GET",
        '"inside"',
        "$ curl http://127.0.0.1:8000/api/method-level/sync/ -D - -X GET",
        "HTTP/1.1 429 Too Many Requests",
        "X-RateLimit-Limit: 1",
        "X-RateLimit-Remaining: 0",
        "X-RateLimit-Reset: 60",
    ]
    assert method_level.endswith(
        '\n{"detail":[{"msg":"Too many requests","type":"ratelimit"}]}'
    )
    after_auth = next(b for b in blocks if "after auth, sync" in b)
    assert (
        after_auth.splitlines()[1:]
        == [
            "$ curl http://127.0.0.1:8000/api/after-auth/sync/ -X GET",
            '{"detail":[{"msg":"Not authenticated","type":"security"}]}',
        ]
        * 2
    )
    assert "date:" not in result.stdout
    assert "server:" not in result.stdout


def test_demo_finds_the_project_given_from_elsewhere(tmp_path):
    result, _ = run_demo("--project", str(ROOT / "examples"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 429 Too Many Requests" in result.stdout


def test_demo_without_the_project_says_where_it_looked(tmp_path):
    result, _ = run_demo(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"no example project at {tmp_path / 'examples' / 'seed_project'}" in (
        result.stderr
    )
    assert "--project" in result.stderr


def test_demo_in_process_checks_the_project_first(tmp_path, capsys):
    assert main(["demo", "--seed", "--project", str(tmp_path)], io.StringIO()) == 2
    assert f"no example project at {tmp_path / 'seed_project'}" in (
        capsys.readouterr().err
    )


def test_demo_refuses_a_process_whose_django_is_configured(capsys):
    # The test suite's process has configured Django already.
    out = io.StringIO()
    status = main(["demo", "--seed", "--project", str(ROOT / "examples")], out)
    assert status == 2
    assert out.getvalue() == ""
    assert "Django is already configured" in capsys.readouterr().err


def test_demo_seed_and_redis_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--seed", "--redis", "redis://127.0.0.1:1/0"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_demo_help_documents_seed_and_project(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed" in text
    assert "--project PATH" in text
    assert "no Redis" in text
    assert "default: examples, relative to the current directory" in text


def test_demo_replays_the_seeds_leaky_bucket_run_result():
    """The chapter's LeakyBucket example has a "Run result": one request,
    answered ``"inside"``. The demo shows it as a session of the seed."""
    result, _ = run_demo(cwd=ROOT)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    leaky = [b for b in blocks if b.startswith("# Algorithms: LeakyBucket")]
    assert leaky[0].splitlines() == [
        "# Algorithms: LeakyBucket",
        "$ curl http://127.0.0.1:8000/api/leaky-bucket/sync/ -X GET",
        '"inside"',
    ]
    # The login example has no "Run result" in the chapter.
    assert leaky[1].startswith(
        "# Algorithms: LeakyBucket on a login endpoint (not in the seed)\n"
    )
