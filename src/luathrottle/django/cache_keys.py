"""Cache keys: who a request counts against.

A cache key turns a request into an identity string, or into None to skip
its throttle for that request. Identities are never stored as they are:
the throttle hashes them (with the view and the key's ``name``) into the
state key, so keys stay short and hold no personal data.
"""

import abc
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from luathrottle._addresses import (
    DEFAULT_IPV6_PREFIX,
    Address,
    Client,
    Clients,
    Network,
    check_networks,
)

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
        fields = ", ".join(
            f"{key}={value!r}"
            for key, value in vars(self).items()
            if not key.startswith("_")
        )
        return f"{type(self).__name__}({fields})"


class RemoteAddr(BaseThrottleCacheKey):
    """The client address, from ``request.META["REMOTE_ADDR"]``.

    Addresses are normalised as ``ProxiedRemoteAddr`` normalises them: an
    IPv4-mapped IPv6 address counts as its IPv4 address, and a port, which
    some servers put there (``192.0.2.1:5678``, ``[2001:db8::1]:443``), is
    dropped, since a client picks a new one per connection. An IPv6 client
    counts as its network of ``ipv6_prefix`` bits, ``2001:db8:1:2::/64``
    by default: a host picks new addresses within its /64 at will. A value
    that is no address at all still counts, as it is. Without a value, or
    for a client in ``exempt``, the throttle is skipped, with no store call.

    Put a reverse proxy's real client address into ``REMOTE_ADDR`` (and
    never trust ``X-Forwarded-For`` blindly), or every client shares the
    proxy's quota.

    Args:
        runs_before_auth: True by default.
        name: ``"RemoteAddr"`` by default.
        ipv6_prefix: the IPv6 network length that counts as one client,
            from 1 to 128 (each address on its own); 64 by default.
        exempt: IP addresses or CIDR networks, IPv4 or IPv6, as strings or
            ``ipaddress`` objects, whose clients skip the throttle.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """

    def __init__(
        self,
        *,
        runs_before_auth: bool = True,
        name: str = "RemoteAddr",
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        exempt: Iterable[str | Address | Network] = (),
    ) -> None:
        super().__init__(runs_before_auth=runs_before_auth, name=name)
        self._clients = Clients(ipv6_prefix=ipv6_prefix, exempt=exempt)
        self.ipv6_prefix = self._clients.ipv6_prefix
        self.exempt = self._clients.exempt

    def __call__(self, request: Any) -> str | None:
        """The client's address or IPv6 network, or None without one or
        for an exempt client."""
        peer = _peer(request, self._clients)
        if peer is None or isinstance(peer, str):
            return peer
        return self._clients.counted(peer)


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
    matched against ``trusted_proxies`` and ``exempt``) as its IPv4
    address, and entries may carry a port, ``192.0.2.1:5678`` or
    ``[2001:db8::1]:443``, which is dropped, since a client picks a new one
    per connection. The client found counts as ``RemoteAddr`` counts one:
    an IPv6 client as its network of ``ipv6_prefix`` bits, and a client in
    ``exempt`` skips the throttle. Without ``REMOTE_ADDR`` the throttle is
    skipped, as with ``RemoteAddr``.

    Args:
        trusted_proxies: the proxies' IP addresses or CIDR networks, IPv4 or
            IPv6, as strings or ``ipaddress`` objects.
        num_proxies: how many proxies in front of Django append to
            ``X-Forwarded-For``, from 1 to 32.
        runs_before_auth: True by default.
        name: ``"ProxiedRemoteAddr"`` by default.
        ipv6_prefix: as for ``RemoteAddr``; 64 by default.
        exempt: as for ``RemoteAddr``: matched against the client found.

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
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        exempt: Iterable[str | Address | Network] = (),
    ) -> None:
        super().__init__(runs_before_auth=runs_before_auth, name=name)
        self.trusted_proxies = check_networks(trusted_proxies, "trusted_proxies")
        if not self.trusted_proxies:
            raise ValueError(
                "trusted_proxies must name at least one proxy; without "
                "proxies, use RemoteAddr()"
            )
        self.num_proxies = _check_num_proxies(num_proxies)
        self._clients = Clients(ipv6_prefix=ipv6_prefix, exempt=exempt)
        self.ipv6_prefix = self._clients.ipv6_prefix
        self.exempt = self._clients.exempt

    def __call__(self, request: Any) -> str | None:
        """The client found by the rule above, counted as ``RemoteAddr``
        counts it; None without ``REMOTE_ADDR`` or for an exempt client."""
        peer = _peer(request, self._clients)
        if peer is None or isinstance(peer, str):
            return peer
        client = peer
        if self._trusts(peer):
            header = request.META.get("HTTP_X_FORWARDED_FOR")
            client = self._client_behind(peer, header)
        return self._clients.counted(client)

    def _trusts(self, client: Client) -> bool:
        return any(client[0] in network for network in self.trusted_proxies)

    def _client_behind(self, peer: Client, header: object) -> Client:
        if not isinstance(header, str):
            return peer
        client = peer
        # rsplit stops after num_proxies commas, so a huge header costs no
        # more than its last entries.
        for entry in reversed(
            header.rsplit(",", self.num_proxies)[-self.num_proxies :]
        ):
            found = self._clients.client(entry.strip())
            if found is None:
                break
            client = found
            if not self._trusts(found):
                break
        return client


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


def _peer(request: Any, clients: Clients) -> Client | str | None:
    """``REMOTE_ADDR`` as ``clients`` count it; the value as it is when it
    is no address; None when there is none."""
    value = request.META.get("REMOTE_ADDR")
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    found = clients.client(text)
    return value if found is None else found


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
