"""noxfile.py's ``VERSION_TESTS``, read without importing nox: the test
modules that the nox sessions run at both ends of the supported range, and
that scripts/test.sh's run in .venv leaves to them."""

import ast
import fnmatch
import functools
from pathlib import Path

NOXFILE = Path(__file__).resolve().parent.parent / "noxfile.py"


# Once: collection asks of every file and folder.
@functools.cache
def version_tests() -> tuple[str, ...]:
    """The patterns of pytest's ``python_files`` that ``VERSION_TESTS`` holds."""
    tree = ast.parse(NOXFILE.read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets]
        == ["VERSION_TESTS"]
    ]
    return tuple(ast.literal_eval(value))


def is_version_test(name: str) -> bool:
    """Whether the module file ``name`` is one of them."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in version_tests())
