"""The registry of Lua scripts: the algorithms themselves.

Each file in ``lua/`` starts with a header naming the script and its
version::

    -- luathrottle script: fixed_window
    -- version: 1

The registry reads the files on first use, never at import, and knows each
script's name, version, source and SHA1. Backends run scripts by SHA1 and
load the source when the server does not know it yet.

``lua/embedded/`` holds the Lua that the in-process backends run around the
scripts (a prelude and their keyspaces). The registry reads those too, but
they are not algorithms: ``all_scripts()`` never lists them, so they never
go to a Redis server.
"""

import functools
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["Script", "all_scripts", "get_script"]

_HEADER = re.compile(r"-- luathrottle script: (\w+)\n-- version: (\d+)\n")
_EMBEDDED_HEADER = re.compile(r"-- luathrottle embedded: (\w+)\n-- version: \d+\n")


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script, as the registry read it.

    Attributes:
        name: the file name without ``.lua``, as its header names it.
        version: the header's version; part of every key the script writes.
        source: the Lua text sent to the server.
        sha: the SHA1 of ``source``, as EVALSHA and SCRIPT LOAD know it.
        key_tag: the script in its keys: the initials of its name and its
            version, ``fw3`` for ``fixed_window`` version 3; short, since
            every key of every identity carries it.
    """

    name: str
    version: int
    source: str = field(repr=False)
    sha: str
    key_tag: str

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
        if f"{name}.lua" != filename:
            raise ValueError(f"{filename} names itself {name!r} in its header")
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        initials = "".join(word[0] for word in name.split("_") if word)
        return cls(
            name=name,
            version=version,
            source=source,
            sha=sha,
            key_tag=f"{initials}{version}",
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
