"""The script registry, the Lua files' conventions, and the keys."""

import hashlib
import re
from pathlib import Path

import pytest

from luathrottle import LeakyBucket, Limit, Limiter, SimpleRate
from luathrottle._keys import hash_identity, state_keys
from luathrottle.scripts import Script, all_scripts, get_script
from states import limiter_keys

ROOT = Path(__file__).resolve().parents[1]


def test_registry_reads_every_lua_file():
    names = [script.name for script in all_scripts()]
    files = sorted(path.stem for path in (ROOT / "lua").glob("*.lua"))
    assert names == files
    assert {
        "concurrency",
        "fixed_window",
        "leaky_bucket",
        "sliding_window",
        "token_bucket",
    } <= set(names)
    for script in all_scripts():
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
        assert script.version >= 1


@pytest.mark.parametrize("script", all_scripts(), ids=lambda s: s.name)
def test_lua_files_follow_the_house_rules(script):
    source = script.source
    assert source.startswith(f"-- luathrottle script: {script.name}\n-- version: ")
    for section in ("KEYS[", "ARGV[1]", "Reply:"):
        assert section in source
    code = "\n".join(
        line for line in source.splitlines() if not line.lstrip().startswith("--")
    )
    assignments = re.findall(r"^(\w+)\s*=", code, flags=re.MULTILINE)
    assert assignments == [], f"globals assigned: {assignments}"


def test_unknown_script_is_named():
    with pytest.raises(ValueError, match="'nope'"):
        get_script("nope")


def test_header_must_name_the_file():
    with pytest.raises(ValueError, match="names itself"):
        Script.from_source(
            "-- luathrottle script: a\n-- version: 1\n", filename="b.lua"
        )
    with pytest.raises(ValueError, match="lacks"):
        Script.from_source("return 1", filename="b.lua")


def test_keys_carry_script_version_and_share_one_hash_tag():
    script = get_script("fixed_window")
    keys = state_keys("lt", script, "", "user-1", [Limit(1, 1), Limit(5, 60)])
    assert all(key.startswith(f"lt:fw{script.version}:{{") for key in keys)
    tags = {re.search(r"\{(.*?)\}", key).group(1) for key in keys}
    assert len(tags) == 1
    assert keys[0].endswith(":1/1")
    assert keys[1].endswith(":5/60")


def test_scope_is_outside_the_hash_tag_and_isolates():
    script = get_script("leaky_bucket")
    one = state_keys("lt", script, "view-a", "ip", [Limit(1, 1)])[0]
    two = state_keys("lt", script, "view-b", "ip", [Limit(1, 1)])[0]
    assert one != two
    assert one.split("}")[0] == two.split("}")[0]


@pytest.mark.parametrize(
    "identity",
    ["x" * 10_000, "{tag}", "}{", "\x00nul", "unicodé ☃", "\ud800 surrogate"],
)
def test_any_identity_gives_a_bounded_key_with_a_clean_tag(identity):
    key = state_keys("lt", get_script("fixed_window"), "", identity, [Limit(1, 1)])[0]
    assert len(key) < 64
    assert key.count("{") == 1
    assert key.count("}") == 1


def test_identity_hashes_keep_parts_apart():
    assert hash_identity("ab", "c") != hash_identity("a", "bc")
    assert hash_identity("a") != hash_identity("b")


def test_algorithms_namespace_their_keys():
    simple = Limiter(1, 60, algorithm=SimpleRate())
    leaky = Limiter(1, 60, algorithm=LeakyBucket())
    assert limiter_keys(simple, "k") != limiter_keys(leaky, "k")
