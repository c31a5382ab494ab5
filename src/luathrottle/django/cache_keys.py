"""Cache keys: who a request counts against.

A cache key turns a request into an identity string, or into None to skip
its throttle for that request. Identities are never stored as they are:
the throttle hashes them (with the view and the key's ``name``) into the
state key, so keys stay short and hold no personal data.
"""

import abc
import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BaseThrottleCacheKey",
    "JwtToken",
    "ProxiedRemoteAddr",
    "RemoteAddr",
    "UserPk",
]

_MAX_NAME = 100
_MAX_PROXIES = 32
# Wider ints are no ids any issuer hands out, and turning them into decimal
# digits is slow (Python refuses beyond 4300 digits).
_MAX_INT_CLAIM = 2**64
# An address with a port: "[2001:db8::1]:443", "[2001:db8::1]" or
# "192.0.2.1:80". ASCII digits only: \d would accept other scripts' digits.
_WITH_PORT = re.compile(
    r"\[(?P<v6>[^\]]+)\](?::[0-9]{1,5})?|(?P<v4>[0-9.]+):[0-9]{1,5}"
)
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BaseThrottleCacheKey(abc.ABC):
    """Identifies the requests one throttle counts together.

    Args:
        runs_before_auth: run in the stage before authentication; such keys
            must not read ``request.user``.
        name: how headers name the throttle, and part of its state key: two
            throttles that differ only in ``name`` never share a counter.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    def __init__(self, *, runs_before_auth: bool, name: str) -> None:
        if not isinstance(runs_before_auth, bool):
            raise TypeError(
                f"runs_before_auth must be a bool, got {runs_before_auth!r}"
            )
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise ValueError(
                f"name must be 1 to {_MAX_NAME} printable characters, got {name!r}"
            )
        self.runs_before_auth = runs_before_auth
        self.name = name

    @abc.abstractmethod
    def __call__(self, request: Any) -> str | None:
        """The identity of ``request``, or None to skip this throttle for it."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__()")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class RemoteAddr(BaseThrottleCacheKey):
    """The client address, from ``request.META["REMOTE_ADDR"]``.

    Addresses are normalised as ``ProxiedRemoteAddr`` normalises them: an
    IPv4-mapped IPv6 address counts as its IPv4 address, and a port, which
    some servers put there (``192.0.2.1:5678``, ``[2001:db8::1]:443``), is
    dropped, since a client picks a new one per connection. A value that is
    no address at all still counts, as it is. Without a value the throttle
    is skipped.

    Put a reverse proxy's real client address into ``REMOTE_ADDR`` (and
    never trust ``X-Forwarded-For`` blindly), or every client shares the
    proxy's quota.

    Args:
        runs_before_auth: True by default.
        name: ``"RemoteAddr"`` by default.
    """

    def __init__(
        self, *, runs_before_auth: bool = True, name: str = "RemoteAddr"
    ) -> None:
        super().__init__(runs_before_auth=runs_before_auth, name=name)

    def __call__(self, request: Any) -> str | None:
        """The normalised client address, or None without one."""
        return _remote_addr(request)


class ProxiedRemoteAddr(BaseThrottleCacheKey):
    """The client address behind trusted reverse proxies.

    The rule, built so that no client can choose its identity: only what
    the trusted proxies wrote is ever read.

    1. ``REMOTE_ADDR`` is the nearest peer. Unless it is in
       ``trusted_proxies``, it is the client, counted as ``RemoteAddr``
       counts it, and ``X-Forwarded-For`` is ignored.
    2. Otherwise ``X-Forwarded-For`` is read from the right, one entry per
       hop, for at most ``num_proxies`` entries; whatever lies further left
       was written by the client and is never read. The first entry that is
       not in ``trusted_proxies`` is the client, and so is the entry at the
       hop limit, trusted or not.
    3. When the entries run out, or one is empty or no address (``unknown``,
       a name, garbage), the walk stops and the last address read is the
       client: a trusted proxy, or ``REMOTE_ADDR`` itself. Such requests
       share that proxy's quota; they never skip the throttle, and never
       count as a value nobody vouched for.

    Each entry read was written by a peer already found trusted, since a
    proxy appends the address it received the request from. A client
    inside ``trusted_proxies`` can name anyone, so list the proxies' own
    addresses, not the networks their clients live in. Listing
    ``0.0.0.0/0`` and ``::/0`` trusts exactly ``num_proxies`` hops, which
    is safe only when nothing reaches Django but through those proxies.

    Addresses are normalised: an IPv4-mapped IPv6 address counts (and is
    matched against ``trusted_proxies``) as its IPv4 address, and entries
    may carry a port, ``192.0.2.1:5678`` or ``[2001:db8::1]:443``, which is
    dropped, since a client picks a new one per connection. Without
    ``REMOTE_ADDR`` the throttle is skipped, as with ``RemoteAddr``.

    Args:
        trusted_proxies: the proxies' IP addresses or CIDR networks, IPv4 or
            IPv6, as strings or ``ipaddress`` objects.
        num_proxies: how many proxies in front of Django append to
            ``X-Forwarded-For``, from 1 to 32.
        runs_before_auth: True by default.
        name: ``"ProxiedRemoteAddr"`` by default.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    def __init__(
        self,
        trusted_proxies: Iterable[str | Address | Network],
        num_proxies: int,
        *,
        runs_before_auth: bool = True,
        name: str = "ProxiedRemoteAddr",
    ) -> None:
        super().__init__(runs_before_auth=runs_before_auth, name=name)
        self.trusted_proxies = _trusted_networks(trusted_proxies)
        self.num_proxies = _check_num_proxies(num_proxies)

    def __call__(self, request: Any) -> str | None:
        """The client address found by the rule above, or None without
        ``REMOTE_ADDR``."""
        peer = _remote_addr(request)
        address = None if peer is None else _parse(peer)
        if address is None or not self._trusts(address):
            return peer
        header = request.META.get("HTTP_X_FORWARDED_FOR")
        return self._client_behind(address, header).compressed

    def _trusts(self, address: Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def _client_behind(self, peer: Address, header: object) -> Address:
        if not isinstance(header, str):
            return peer
        client = peer
        # rsplit stops after num_proxies commas, so a huge header costs no
        # more than its last entries.
        for entry in reversed(
            header.rsplit(",", self.num_proxies)[-self.num_proxies :]
        ):
            address = _parse_with_port(entry.strip())
            if address is None:
                break
            client = address
            if not self._trusts(address):
                break
        return client


def _trusted_networks(trusted_proxies: object) -> tuple[Network, ...]:
    if isinstance(trusted_proxies, str | bytes) or not isinstance(
        trusted_proxies, Iterable
    ):
        raise TypeError(
            "trusted_proxies must be a list of IP addresses or networks such "
            f"as ['10.0.0.0/8'], got {trusted_proxies!r}"
        )
    networks = tuple(_trusted_network(entry) for entry in trusted_proxies)
    if not networks:
        raise ValueError(
            "trusted_proxies must name at least one proxy; without proxies, "
            "use RemoteAddr()"
        )
    return networks


def _trusted_network(entry: object) -> Network:
    # ip_network() also takes ints and bytes, which are no way to write one.
    if not isinstance(entry, str | Address | Network):
        raise TypeError(
            "trusted_proxies must hold IP addresses or networks, got "
            f"{type(entry).__name__} {entry!r}"
        )
    try:
        network = ipaddress.ip_network(entry)
    except ValueError as exc:
        raise ValueError(f"trusted_proxies holds {entry!r}: {exc}") from exc
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V4):
        raise ValueError(
            f"trusted_proxies holds {entry!r}, an IPv4-mapped network; list "
            "it as IPv4, since mapped addresses are matched as IPv4"
        )
    return network


def _check_num_proxies(num_proxies: object) -> int:
    if isinstance(num_proxies, bool) or not isinstance(num_proxies, int):
        raise TypeError(
            f"num_proxies must be an int, got {type(num_proxies).__name__} "
            f"{num_proxies!r}"
        )
    if not 1 <= num_proxies <= _MAX_PROXIES:
        raise ValueError(
            f"num_proxies must be between 1 and {_MAX_PROXIES} (the proxies "
            f"that append to X-Forwarded-For), got {num_proxies!r}"
        )
    return num_proxies


def _remote_addr(request: Any) -> str | None:
    value = request.META.get("REMOTE_ADDR")
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    # Parsing an address costs more than the rest of a throttle's key, and a
    # site sees the same addresses again and again: remember short ones.
    normalize = _cached_normalize if len(text) <= _CACHED_LENGTH else _normalize
    return normalize(text) or value


def _normalize(text: str) -> str | None:
    address = _parse_with_port(text)
    return None if address is None else address.compressed


_CACHED_LENGTH = 64
_cached_normalize = functools.lru_cache(maxsize=4096)(_normalize)


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


def _after_auth(cache_key: str, runs_before_auth: bool) -> None:
    if runs_before_auth is not False:
        raise ValueError(
            f"{cache_key} reads who is authenticated, so it must run after "
            f"auth; got runs_before_auth={runs_before_auth!r}"
        )


class UserPk(BaseThrottleCacheKey):
    """The authenticated user's primary key, from ``request.user``.

    Anonymous users, users without a ``pk`` and, unless told otherwise,
    superusers and staff skip the throttle.

    Args:
        runs_before_auth: must be False.
        name: ``"UserPk"`` by default.
        exclude_superuser: skip superusers.
        exclude_staff: skip staff users.
        exclude_stuff: the seed's spelling of ``exclude_staff``.

    Raises:
        TypeError, ValueError: a bad argument, or both spellings that
            disagree.
    """

    def __init__(
        self,
        *,
        runs_before_auth: bool = False,
        name: str = "UserPk",
        exclude_superuser: bool = True,
        exclude_staff: bool | None = None,
        exclude_stuff: bool | None = None,
    ) -> None:
        _after_auth("UserPk", runs_before_auth)
        super().__init__(runs_before_auth=runs_before_auth, name=name)
        if (
            None not in (exclude_staff, exclude_stuff)
            and exclude_staff != exclude_stuff
        ):
            raise ValueError(
                "exclude_staff and exclude_stuff are the same option; "
                f"got {exclude_staff!r} and {exclude_stuff!r}"
            )
        staff = exclude_staff if exclude_staff is not None else exclude_stuff
        for argument, value in (
            ("exclude_superuser", exclude_superuser),
            ("exclude_staff", staff),
        ):
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{argument} must be a bool, got {value!r}")
        self.exclude_superuser = exclude_superuser
        self.exclude_staff = True if staff is None else staff

    def __call__(self, request: Any) -> str | None:
        """The user's pk as a string, or None for users who are skipped."""
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        if self.exclude_superuser and getattr(user, "is_superuser", False):
            return None
        if self.exclude_staff and getattr(user, "is_staff", False):
            return None
        pk = getattr(user, "pk", None)
        return None if pk is None else str(pk)


class JwtToken(BaseThrottleCacheKey):
    """The token's ``jti`` claim, else its ``sub`` claim, hashed with SHA-256.

    The claims are read from ``request.jwt_claims`` (the attribute is
    ``claims_attribute``), a mapping that the JWT authentication put there.
    A usable claim is a non-empty string, or an int within 64 bits, which
    counts as its decimal digits (so ``42`` and ``"42"`` are one subject).
    Without claims, or without a usable ``jti`` or ``sub``, the throttle is
    skipped; bools, floats, wider ints and other types are not usable.
    Claims of any length are fine, as only their hash is kept. The raw
    token is never used.

    Args:
        runs_before_auth: must be False.
        name: ``"JwtToken"`` by default.
        claims_attribute: the request attribute that holds the claims.

    Raises:
        TypeError, ValueError: a bad argument.
    """

    def __init__(
        self,
        *,
        runs_before_auth: bool = False,
        name: str = "JwtToken",
        claims_attribute: str = "jwt_claims",
    ) -> None:
        _after_auth("JwtToken", runs_before_auth)
        super().__init__(runs_before_auth=runs_before_auth, name=name)
        if not isinstance(claims_attribute, str) or not claims_attribute.isidentifier():
            raise ValueError(
                f"claims_attribute must be an attribute name, got {claims_attribute!r}"
            )
        self.claims_attribute = claims_attribute

    def __call__(self, request: Any) -> str | None:
        """The SHA-256 of ``jti`` (or ``sub``), or None without either."""
        claims = getattr(request, self.claims_attribute, None)
        if not isinstance(claims, Mapping):
            return None
        for claim in ("jti", "sub"):
            value = _claim_text(claims.get(claim))
            if value:
                text = f"{claim}:{value}".encode("utf-8", "surrogatepass")
                return hashlib.sha256(text).hexdigest()
        return None


def _claim_text(value: object) -> str | None:
    """A claim as the text its hash covers, or None if it is no usable id."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if -_MAX_INT_CLAIM < value < _MAX_INT_CLAIM else None
    return None
