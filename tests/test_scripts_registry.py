"""The script registry, the Lua files' conventions, and the keys."""

import hashlib
import re
from pathlib import Path

import pytest

from luathrottle import LeakyBucket, Limit, Limiter, SimpleRate
from luathrottle.backends.memory import MemoryBackend
from luathrottle.django import SyncThrottle
from luathrottle.django.cache_keys import BaseThrottleCacheKey
from luathrottle.scripts import Script, all_scripts, get_script
from states import hash_tag, limiter_keys

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
        assert script.state >= 1


@pytest.mark.parametrize("script", all_scripts(), ids=lambda s: s.name)
def test_lua_files_follow_the_house_rules(script):
    source = script.source
    assert source.startswith(f"-- luathrottle script: {script.name}\n-- version: ")
    # Ours name their state layout, rather than take their version for it.
    assert f"\n-- state: {script.state}\n" in source
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
            "-- luathrottle script: a\n-- version: 1\n-- state: 1\n",
            filename="b.lua",
        )
    with pytest.raises(ValueError, match="lacks"):
        Script.from_source("return 1", filename="b.lua")


#: Every script's state version and key tag, the tag being in every key it
#: has written. Changing one is changing a state layout, which moves every
#: deployed identity to keys no earlier build reads: see the
#: ``luathrottle.scripts`` docstring for what such a change owes, then
#: change this pin with it.
KEY_TAGS = {
    "concurrency": (1, "c1"),
    "fixed_window": (6, "fw6"),
    "leaky_bucket": (4, "lb4"),
    "sliding_window": (3, "sw3"),
    "token_bucket": (3, "tb3"),
}


def test_key_tags_are_pinned():
    assert {s.name: (s.state, s.key_tag) for s in all_scripts()} == KEY_TAGS


def test_the_key_tag_follows_the_state_not_the_version():
    script = get_script("fixed_window")
    bumped = script.source.replace(
        f"-- version: {script.version}\n", f"-- version: {script.version + 1}\n", 1
    )
    newer = Script.from_source(bumped, filename="fixed_window.lua")
    assert newer.version == script.version + 1
    assert newer.key_tag == script.key_tag
    layout = bumped.replace(f"-- state: {script.state}\n", "-- state: 9\n", 1)
    assert Script.from_source(layout, filename="fixed_window.lua").key_tag == "fw9"
    # A script of its own that names no state keeps the keys it had.
    own = Script.from_source(
        "-- luathrottle script: my_own\n-- version: 3\nreturn 1\n",
        filename="my_own.lua",
    )
    assert (own.state, own.key_tag) == (3, "mo3")


def test_keys_carry_the_state_version_and_share_one_hash_tag():
    script = get_script("fixed_window")
    limiter = Limiter([Limit(1, 1), Limit(5, 60)], algorithm=SimpleRate(), prefix="lt")
    assert limiter.script is script
    keys = limiter.state_keys("user-1")
    assert all(key.startswith(f"lt:fw{script.state}:{{") for key in keys)
    tags = {re.search(r"\{(.*?)\}", key).group(1) for key in keys}
    assert len(tags) == 1
    assert keys[0].endswith(":1s")
    assert keys[1].endswith(":60s")


def scoped_keys(scope, identity, algorithm=None):
    """The state key of ``identity`` under one limit, within ``scope``."""
    limiter = Limiter(Limit(1, 1), algorithm=algorithm, prefix="lt", scope=scope)
    return limiter.state_keys(identity)[0]


def test_scope_is_outside_the_hash_tag_and_isolates():
    one = scoped_keys("view-a", "ip", LeakyBucket())
    two = scoped_keys("view-b", "ip", LeakyBucket())
    assert one.startswith("lt:lb")
    assert one != two
    assert one.split("}")[0] == two.split("}")[0]


@pytest.mark.parametrize(
    "identity",
    ["x" * 10_000, "{tag}", "}{", "\x00nul", "unicodé ☃", "\ud800 surrogate"],
)
def test_any_identity_gives_a_bounded_key_with_a_clean_tag(identity):
    key = scoped_keys("", identity, SimpleRate())
    assert key.startswith("lt:fw")
    assert len(key) < 64
    assert key.count("{") == 1
    assert key.count("}") == 1


class Fixed(BaseThrottleCacheKey):
    """Counts every request as the one client ``ip``."""

    def __call__(self, request):
        return "ip"


def test_the_parts_of_a_key_are_hashed_apart():
    # A text split otherwise between the scope and the identity, or between
    # a view and a throttle's cache key name, is another counter.
    assert scoped_keys("ab", "c") != scoped_keys("a", "bc")
    assert scoped_keys("", "abc") != scoped_keys("abc", "")
    assert scoped_keys("abc", "") != scoped_keys("ab", "c")

    def throttle_key(view, name):
        item = SyncThrottle(
            1,
            1,
            cache_key=Fixed(runs_before_auth=True, name=name),
            backend=MemoryBackend(),
        )
        return item.state_key(None, view)

    assert throttle_key("ab", "c") != throttle_key("a", "bc")
    # Identities: each its own hash tag.
    assert hash_tag(scoped_keys("", "a")) != hash_tag(scoped_keys("", "b"))


def test_algorithms_namespace_their_keys():
    simple = Limiter(1, 60, algorithm=SimpleRate())
    leaky = Limiter(1, 60, algorithm=LeakyBucket())
    assert limiter_keys(simple, "k") != limiter_keys(leaky, "k")
