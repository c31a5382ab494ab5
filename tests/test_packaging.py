"""``pip install .`` (not editable) into a clean venv finds and runs the Lua."""

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import luathrottle, luathrottle.scripts as s
assert "site-packages" in str(s._lua_directory()), s._lua_directory()
allowed = [
    [limiter.hit("k").allowed for _ in range(3)]
    for limiter in (
        luathrottle.Limiter("2/minute", algorithm=algorithm)
        for algorithm in (
            luathrottle.SimpleRate(),
            luathrottle.LeakyBucket(),
            luathrottle.TokenBucket(burst=2),
            luathrottle.SlidingWindow(),
        )
    )
]
print(allowed == [[True, True, False]] * 4, len(s.all_scripts()))
# The embedded backends' Lua ships in a subfolder, and is no algorithm.
print(all(s.embedded_source(name) for name in (
    "prelude", "memory_keyspace", "staging_keyspace"
)))
"""


def test_wheel_ships_the_lua_scripts(tmp_path):
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, ROOT],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("luathrottle-*.whl"))
    subprocess.run(
        [python, "-m", "pip", "install", "-q", wheel], check=True, timeout=300
    )
    result = subprocess.run(
        [python, "-c", PROGRAM],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # Every script of the checkout ships, however many there are.
    scripts = len(list((ROOT / "lua").glob("*.lua")))
    assert result.stdout.split("\n")[:2] == [f"True {scripts}", "True"]
