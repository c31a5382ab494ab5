"""What the valkey-py tests share besides their fixtures (in conftest.py):
what the server counted, and identities on every primary of a cluster."""

from luathrottle import Limiter
from states import limiter_keys

SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha", "eval", "function|load")


def script_commands(admin):
    """Calls of each script command since the last CONFIG RESETSTAT."""
    stats = admin.info("commandstats")
    found = {
        name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in SCRIPT_COMMANDS
    }
    return {name: calls for name, calls in found.items() if calls}


def keys_on_every_primary(cluster, per_primary):
    """Identities whose keys land ``per_primary`` on each primary."""
    limiter = Limiter(1, 60)
    chosen, per_node = [], {}
    for index in range(10_000):
        key = f"client-{index}"
        node = cluster.get_node_from_key(limiter_keys(limiter, key)[0]).name
        if per_node.get(node, 0) < per_primary:
            per_node[node] = per_node.get(node, 0) + 1
            chosen.append(key)
        if len(chosen) == 3 * per_primary:
            return chosen
    raise AssertionError(f"keys did not spread: {per_node}")
