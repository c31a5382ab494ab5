"""Client addresses, as every door counts them.

One module parses, normalises and buckets addresses, so that the Django
cache keys, the ASGI middleware and the FastAPI dependency count a client
alike: an IPv4-mapped IPv6 address as its IPv4 address, a port dropped
(a client picks a new one per connection), an IPv6 client as its /64
network by default, and a client in an allow-list not at all.

A /64 is what one subscriber usually gets, and a host within it picks
new addresses at will (privacy extensions), so counting IPv6 clients by
address would hand each one as many quotas as it cares to take.
"""

import functools
import ipaddress
import re
from collections.abc import Iterable

__all__ = [
    "DEFAULT_IPV6_PREFIX",
    "Address",
    "Client",
    "Clients",
    "Network",
    "check_networks",
    "check_own_key",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: An address, and what it counts as: itself, or its IPv6 network.
Client = tuple[Address, str]

DEFAULT_IPV6_PREFIX = 64
# An address with a port: "[2001:db8::1]:443", "[2001:db8::1]" or
# "192.0.2.1:80". ASCII digits only: \d would accept other scripts' digits.
_WITH_PORT = re.compile(
    r"\[(?P<v6>[^\]]+)\](?::[0-9]{1,5})?|(?P<v4>[0-9.]+):[0-9]{1,5}"
)
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")
# Parsing an address costs more than the rest of a throttle's key, and a
# site sees the same addresses again and again: short ones are remembered.
_CACHED_LENGTH = 64
_CACHED = 4096


def _parse(text: str) -> Address | None:
    """``text`` as an address, IPv4-mapped IPv6 turned into IPv4; else None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _parse_with_port(text: str) -> Address | None:
    """``text`` as an address, with or without a port, which is dropped."""
    match = _WITH_PORT.fullmatch(text)
    if match is None:
        return _parse(text)
    if match["v6"] is not None and ":" not in match["v6"]:
        # Brackets are for IPv6 only; "[192.0.2.1]" is no form a proxy writes.
        return None
    return _parse(match["v6"] or match["v4"])


def _bucket(address: Address, ipv6_prefix: int) -> str:
    if address.version == 4 or ipv6_prefix == 128:
        return address.compressed
    return ipaddress.IPv6Network((address, ipv6_prefix), strict=False).compressed


def _client(text: str, ipv6_prefix: int) -> Client | None:
    address = _parse_with_port(text)
    return None if address is None else (address, _bucket(address, ipv6_prefix))


_cached_client = functools.lru_cache(maxsize=_CACHED)(_client)


def check_networks(value: object, argument: str) -> tuple[Network, ...]:
    """``value`` as networks: addresses or CIDR networks, IPv4 or IPv6, as
    strings or ``ipaddress`` objects.

    Raises:
        TypeError, ValueError: naming ``argument`` and the bad entry.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(
            f"{argument} must be a list of IP addresses or networks such as "
            f"['10.0.0.0/8'], got {value!r}"
        )
    return tuple(_network(entry, argument) for entry in value)


def _network(entry: object, argument: str) -> Network:
    # ip_network() also takes ints and bytes, which are no way to write one.
    if not isinstance(entry, str | Address | Network):
        raise TypeError(
            f"{argument} must hold IP addresses or networks, got "
            f"{type(entry).__name__} {entry!r}"
        )
    try:
        network = ipaddress.ip_network(entry)
    except ValueError as exc:
        raise ValueError(f"{argument} holds {entry!r}: {exc}") from exc
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V4):
        raise ValueError(
            f"{argument} holds {entry!r}, an IPv4-mapped network; list it as "
            "IPv4, since mapped addresses are matched as IPv4"
        )
    return network


def _check_ipv6_prefix(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"ipv6_prefix must be an int, got {type(value).__name__} {value!r}"
        )
    if not 1 <= value <= 128:
        raise ValueError(
            "ipv6_prefix must be between 1 and 128 (128 counts each address), "
            f"got {value!r}"
        )
    return value


def check_own_key(clients: "Clients", key: object) -> None:
    """Refuse an ``ipv6_prefix`` given with a ``key`` of one's own: only
    the default key reads it, and it must not be ignored silently.

    Raises:
        ValueError: naming ``ipv6_prefix``.
    """
    if key is not None and clients.ipv6_prefix != DEFAULT_IPV6_PREFIX:
        raise ValueError(
            "ipv6_prefix is how the default key counts IPv6 clients, and a "
            "key of your own counts as it likes; drop "
            f"ipv6_prefix={clients.ipv6_prefix!r}"
        )


class Clients:
    """How a door counts clients by address: each IPv4 address on its
    own, each IPv6 network of ``ipv6_prefix`` bits as one client, and the
    clients within ``exempt`` not at all.

    Args:
        ipv6_prefix: the length of the IPv6 network that counts as one
            client, from 1 to 128 (each address on its own).
        exempt: addresses or CIDR networks whose clients are never counted.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    __slots__ = ("exempt", "ipv6_prefix")

    def __init__(
        self,
        *,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        exempt: Iterable[str | Address | Network] = (),
    ) -> None:
        self.ipv6_prefix = _check_ipv6_prefix(ipv6_prefix)
        self.exempt = check_networks(exempt, "exempt")

    def client(self, text: str) -> Client | None:
        """The address in ``text`` (a port dropped, IPv4-mapped IPv6 as
        IPv4) and what it counts as: itself, or its IPv6 network written
        with its prefix (``2001:db8:1:2::/64``); None if it is no address."""
        if len(text) <= _CACHED_LENGTH:
            return _cached_client(text, self.ipv6_prefix)
        return _client(text, self.ipv6_prefix)

    def exempts(self, address: Address) -> bool:
        """Whether ``address`` is in ``exempt``."""
        return any(address in network for network in self.exempt)

    def exempts_host(self, host: str | None) -> bool:
        """Whether the client at ``host``, an address as a server wrote
        it, is in ``exempt``; a value that is no address never is."""
        if not self.exempt or not host:
            return False
        found = self.client(host.strip())
        return found is not None and self.exempts(found[0])

    def counted(self, client: Client) -> str | None:
        """What ``client`` counts as, or None when it is exempt."""
        if self.exempt and self.exempts(client[0]):
            return None
        return client[1]

    def identity(self, text: str) -> str | None:
        """What the client at ``text`` counts as, or None when it is
        exempt; a value that is no address counts as it is."""
        found = self.client(text)
        return text if found is None else self.counted(found)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Clients)
            and self.ipv6_prefix == other.ipv6_prefix
            and self.exempt == other.exempt
        )
