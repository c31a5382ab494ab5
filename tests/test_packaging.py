"""``pip install .`` (not editable) into a clean venv finds and runs the Lua."""

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import sys
# Python's audit hook sees every file opened: the Lua read must come from
# the installed package, not from a checkout.
opened = set()
sys.addaudithook(
    lambda event, args: event == "open"
    and str(args[0]).endswith(".lua")
    and opened.add(str(args[0]))
)
import luathrottle, luathrottle.scripts as s
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
print(all("site-packages" in path for path in opened), len(opened))
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
    # Every script of the checkout ships, however many there are, and every
    # Lua file read, the embedded ones too, was read from site-packages.
    scripts = len(list((ROOT / "lua").glob("*.lua")))
    read = scripts + len(list((ROOT / "lua" / "embedded").glob("*.lua")))
    assert result.stdout.split("\n")[:3] == [
        f"True {scripts}",
        "True",
        f"True {read}",
    ]
