"""The registry of Lua scripts: the algorithms themselves.

Each file in ``lua/`` starts with a header naming the script, its version
and the layout of the state it keeps::

    -- luathrottle script: fixed_window
    -- version: 6
    -- state: 5

and, for a script that keeps every limit of an identity in one hash, a
last line, ``-- layout: hash``. A script without a ``-- state:`` line (one
of your own, written before there was one) has its version for a state.
The registry reads the files on first use, never at import, and knows each
script's name, version, state, source and SHA1. Backends run scripts by
SHA1 and load the source when the server does not know it yet.

``-- version:`` counts changes to the code; ``-- state:`` names the layout
of what it stores, and makes the key tag, with the script's initials:
``fw5`` is in every key ``fixed_window`` writes. A new version whose layout
is unchanged keeps its key tag, so it reads and writes the very state the
previous version wrote: during a rolling deploy both builds count on one
state, and a quota is never doubled. A change of layout must bump
``-- state:``, which moves the keys to a new tag. The new script then owes
reading the previous layout, at the previous tag's keys (sent to it beside
its own), or every count starts afresh and each build counts apart while
both run; and writing it too, so that the old build still running sees
its hits, until a later version drops it once no build of the old layout
runs. ``tests/test_scripts_registry.py`` pins today's tags, so that a
layout change is always a deliberate act.

``lua/embedded/`` holds the Lua that the in-process backends run around the
scripts (a prelude and their keyspaces). The registry reads those too, but
they are not algorithms: ``all_scripts()`` never lists them, so they never
go to a Redis server.

On Redis 7+ the same scripts also go to the server as one function library,
``luathrottle`` (see ``library()``): its code is generated here from the
files, each script's body wrapped in a Lua function, so ``lua/`` stays the
one source of truth.
"""

import functools
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["LIBRARY_NAME", "Library", "Script", "all_scripts", "get_script", "library"]

_HEADER = re.compile(
    r"-- luathrottle script: (\w+)\n-- version: (\d+)\n(?:-- state: (\d+)\n)?"
    r"(-- layout: hash\n)?"
)
_EMBEDDED_HEADER = re.compile(r"-- luathrottle embedded: (\w+)\n-- version: \d+\n")


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script, as the registry read it.

    Attributes:
        name: the file name without ``.lua``, as its header names it.
        version: the header's version of the code.
        state: the header's version of the state layout.
        source: the Lua text sent to the server.
        sha: the SHA1 of ``source``, as EVALSHA and SCRIPT LOAD know it.
        key_tag: the script in its keys: the initials of its name and its
            state version, ``fw5`` for ``fixed_window`` state 5; short, since
            every key of every identity carries it.
        function: the script's name in the function library,
            ``lt_fixed_window_v5_`` and the first 8 digits of ``sha``: named
            by content, as EVALSHA is, so that a server holding another
            build's library never runs this one's calls with other code.
        function_ro: its read-only twin, flagged ``no-writes`` for
            FCALL_RO, which runs peeks only.
        hashed: the header says ``-- layout: hash``: the limits of one
            identity are fields of one hash, and a call names each limit's
            hash in KEYS and its field after the limits in ARGV
            (``luathrottle._keys.script_words`` splits a state key so).
    """

    name: str
    version: int
    state: int
    source: str = field(repr=False)
    sha: str
    key_tag: str
    function: str
    function_ro: str
    hashed: bool = False

    @classmethod
    def from_source(cls, source: str, *, filename: str) -> "Script":
        """Read a script's header and hash its source.

        Raises:
            ValueError: the header is missing or names another file.
        """
        header = _HEADER.match(source)
        if header is None:
            raise ValueError(f"{filename} lacks the luathrottle script header")
        name, version = header.group(1), int(header.group(2))
        state = version if header.group(3) is None else int(header.group(3))
        if f"{name}.lua" != filename:
            raise ValueError(f"{filename} names itself {name!r} in its header")
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        initials = "".join(word[0] for word in name.split("_") if word)
        function = f"lt_{name}_v{version}_{sha[:8]}"
        return cls(
            name=name,
            version=version,
            state=state,
            source=source,
            sha=sha,
            key_tag=f"{initials}{state}",
            function=function,
            function_ro=f"{function}_ro",
            hashed=header.group(4) is not None,
        )


def _lua_directory() -> Path:
    """Where the scripts are: inside the installed package, or in a checkout."""
    packaged = Path(str(resources.files("luathrottle") / "lua"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "lua"


@functools.cache
def _load_all() -> dict[str, Script]:
    scripts = {}
    for path in sorted(_lua_directory().glob("*.lua")):
        script = Script.from_source(path.read_text(), filename=path.name)
        scripts[script.name] = script
    if not scripts:
        raise RuntimeError(f"no Lua scripts found in {_lua_directory()}")
    tags = [script.key_tag for script in scripts.values()]
    if len(set(tags)) != len(tags):
        raise RuntimeError(f"two Lua scripts share a key tag: {sorted(tags)}")
    return scripts


@functools.cache
def embedded_source(name: str) -> str:
    """The source of ``lua/embedded/<name>.lua``, for the in-process backends.

    Raises:
        ValueError: there is no such file, or its header names another.
    """
    path = _lua_directory() / "embedded" / f"{name}.lua"
    try:
        source = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"no embedded Lua named {name!r} in {path.parent}") from None
    header = _EMBEDDED_HEADER.match(source)
    if header is None or header.group(1) != name:
        raise ValueError(f"{path.name} lacks the header naming it {name!r}")
    return source


def get_script(name: str) -> Script:
    """The script called ``name``.

    Raises:
        ValueError: no script has that name.
    """
    try:
        return _load_all()[name]
    except KeyError:
        raise ValueError(
            f"no Lua script named {name!r}; known: {', '.join(_load_all())}"
        ) from None


def all_scripts() -> tuple[Script, ...]:
    """Every script, sorted by name."""
    return tuple(_load_all().values())


#: The function library's name on the server.
LIBRARY_NAME = "luathrottle"


@dataclass(frozen=True, slots=True)
class Library:
    """Every script as one Redis function library.

    Attributes:
        name: ``LIBRARY_NAME``.
        code: the Lua that FUNCTION LOAD takes, with its shebang.
        functions: the name of every function it registers, sorted.
    """

    name: str
    code: str = field(repr=False)
    functions: tuple[str, ...]


# A script's body becomes the body of a local function whose parameters
# take the names the script reads, so the file runs unchanged. The
# read-only entry refuses anything but a peek, which never writes: Redis
# would refuse the write anyway, with a less telling error.
_WRAPPER = """
local function {local}(KEYS, ARGV)
{source}
end
redis.register_function('{function}', {local})
redis.register_function{{
  function_name = '{function_ro}',
  callback = function(keys, args)
    if args[1] ~= 'peek' then
      return redis.error_reply('ERR {function_ro} only peeks')
    end
    return {local}(keys, args)
  end,
  flags = {{'no-writes'}},
}}
"""


@functools.cache
def library() -> Library:
    """The function library of every script, built from ``lua/`` once."""
    parts = [
        f"#!lua name={LIBRARY_NAME}\n"
        "-- Generated by luathrottle.scripts from lua/*.lua; do not edit.\n"
    ]
    functions = []
    for script in all_scripts():
        parts.append(
            _WRAPPER.format(
                local=f"{script.name}_v{script.version}",
                source=script.source.rstrip("\n"),
                function=script.function,
                function_ro=script.function_ro,
            )
        )
        functions += [script.function, script.function_ro]
    return Library(LIBRARY_NAME, "".join(parts), tuple(sorted(functions)))
