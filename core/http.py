"""The one outbound HTTP client for every address a user can steer: account base URLs, covers, body images,
feeds, webhooks.

A URL typed by a user must not reach inside the installation (the API, Redis, PostgreSQL, a cloud metadata
service, a neighbour on the intranet). :func:`guarded_client` makes an ``httpx.Client`` whose connections are
opened by :class:`GuardedBackend`: it resolves the host itself, refuses the connection unless *every* address
the name resolves to is public (or on the allow-list), and connects to the address it checked — so a name that
resolves to a public address at the check and to ``127.0.0.1`` at the connect (DNS rebinding) cannot slip by.
Every redirect hop opens its connection through the same backend, so each hop is checked again; TLS still
verifies the certificate against the host *name* (httpcore passes it as the server name).

:func:`fetch` reads a body with a cap on its size, on redirects and on total time (a server that trickles bytes
is cut off), and errors say what was refused, never what the inside answered.

The allow-list (``MATRIX_OUTBOUND_ALLOW``) lets the platform sandboxes, which listen on loopback, be reached:
entries are ``host``, ``host:port`` or a network such as ``10.1.0.0/16``. By default the embedded demo allows
its sandbox address and nothing else.

Why a network backend rather than a check of the URL before the request: the check and the connect must
use the *same* resolution, and httpcore's ``network_backend`` is the seam where a connection is opened
(httpx has no hook between resolving and connecting).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpcore
import httpx

from core.errors import InvalidInput
from core.settings import get_settings

USER_AGENT = "media-matrix/1.0 (+https://github.com/media-matrix)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> [address, …]``: how names are resolved (tests inject one to stage DNS rebinding)."""

# Metadata services that sit at addresses Python calls "global" (Alibaba Cloud's; AWS/GCP/Azure use
# 169.254.169.254, which is link-local and refused as such; Oracle uses 192.0.0.192, reserved).
_METADATA = {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(InvalidInput):
    """An outbound request was refused: the address is not public, or the answer broke a limit."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which destinations outbound requests may reach: public addresses, plus the allow-list.

    ``allow_hosts``: ``(host, port)`` pairs (port ``None``: any port) matched against the URL's host as
    written; ``allow_networks``: networks matched against the resolved addresses.
    """

    allow_hosts: frozenset[tuple[str, int | None]] = frozenset()
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AddressPolicy:
        """A policy from allow-list entries: ``host``, ``host:port``, ``[v6]:port``, an address or a network.

        Raises :class:`InvalidInput` naming an entry that is none of these.
        """
        hosts: set[tuple[str, int | None]] = set()
        networks = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            host, port = _split_host_port(entry)
            if not host:
                raise InvalidInput(f"outbound allow-list entry {raw!r} is not host, host:port or a network")
            hosts.add((host.lower(), port))
        return cls(frozenset(hosts), tuple(networks))

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether the URL's host (as written) and port are on the allow-list."""
        host = host.lower().strip("[]")
        return (host, port) in self.allow_hosts or (host, None) in self.allow_hosts

    def check_address(self, address: str) -> None:
        """Refuse (:class:`OutboundRefused`) an address that is not public and not on the allow-list."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if any(ip in net for net in self.allow_networks):
            return
        reason = non_public_reason(ip)
        if reason:
            raise OutboundRefused(f"refused: {address} is {reason}")


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8100
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    if port and not port.isdigit():
        return "", None
    return host, (int(port) if port else None)


def _embedded_address(ip: IPAddress) -> IPAddress | None:
    """The IPv4 address an IPv6 address carries (mapped ``::ffff:a.b.c.d``, 6to4, NAT64), else ``None``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def non_public_reason(ip: IPAddress) -> str:
    """Why ``ip`` must not be reached from inside (``"a loopback address"``…), or ``""`` for a public one.

    IPv6 forms that carry an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64) are judged by that address.
    """
    inner = _embedded_address(ip)
    if inner is not None:
        reason = non_public_reason(inner)
        return f"an IPv6 form of {inner}, {reason}" if reason else ""
    checks = (
        ("a metadata service address", ip in _METADATA),
        ("a loopback address", ip.is_loopback),
        ("an unspecified address", ip.is_unspecified),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a reserved address", ip.is_reserved),
        ("a private address", ip.is_private),
        # shared address space (100.64/10, carrier NAT) and whatever else IANA does not route globally
        ("not a globally routed address", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), "")


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend with the policy between resolving a name and connecting to it."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self._resolve = resolver or _system_resolver
        self._inner = inner or httpcore.SyncBackend()  # what opens the socket (tests record what it is asked)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve ``host``, refuse it unless allowed, connect to the address that was checked."""
        allowed = self.policy.host_allowed(host, port)
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        if not allowed:
            # Every address, not only the first: a name with one public and one private address could be
            # answered by the private one on a retry or by another resolver.
            for address in addresses:
                try:
                    self.policy.check_address(address)
                except OutboundRefused as exc:
                    shown = f"{host} ({address})" if host != address else host
                    raise OutboundRefused(
                        str(exc).replace(f"refused: {address}", f"refused: {shown}", 1)
                        + " — add it to MATRIX_OUTBOUND_ALLOW if it must be reached"
                    ) from None
        for address in addresses[:-1]:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:  # try the next address, as a resolver-using client would
                continue
        return self._inner.connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        """Never: a user's URL has no business with a local socket."""
        raise OutboundRefused("refused: unix sockets are not reachable from outbound requests")

    def sleep(self, seconds: float) -> None:
        """As httpcore's synchronous backend (retries between connection attempts)."""
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections go through :class:`GuardedBackend`; no proxies from the
    environment (a proxy would connect on our behalf, unchecked)."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver | None = None,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        ssl_context = self._pool._ssl_context  # the context httpx built from ``verify``
        # Replace the pool httpx built with one on the guarded backend (same settings as httpx's defaults).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(policy, resolver=resolver),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse schemes other than http(s) and name the refused URL (without query or credentials)."""
        if request.url.scheme not in ("http", "https"):
            raise OutboundRefused(f"refused: only http(s) URLs are fetched, not {safe_url(request.url)}")
        try:
            return super().handle_request(request)
        except OutboundRefused as exc:
            raise OutboundRefused(f"{exc} (for {safe_url(request.url)})") from None


def safe_url(url: httpx.URL | str) -> str:
    """A URL fit for a message or a log line: no user info, no query (tokens travel there), no fragment."""
    if str(url)[:5].lower() == "data:":
        return "a data: URI"
    try:
        url = httpx.URL(str(url))
    except httpx.InvalidURL:
        return "an invalid URL"
    port = f":{url.port}" if url.port else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}{url.path}" if url.scheme else url.path


@cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~35 ms; one context serves every client of the process.
    return ssl.create_default_context()


def default_policy() -> AddressPolicy:
    """The policy of the current settings: ``MATRIX_OUTBOUND_ALLOW``, else the sandbox on the embedded demo."""
    settings = get_settings()
    return _policy_for(settings.outbound_allow, settings.sandbox_host, settings.sandbox_port, settings.embedded)


@cache
def _policy_for(allow: str, sandbox_host: str, sandbox_port: int, embedded: bool) -> AddressPolicy:
    if allow.strip().lower() == "none":
        return AddressPolicy()
    if allow.strip():
        return AddressPolicy.parse(allow.split(","))
    return AddressPolicy.parse([f"{sandbox_host}:{sandbox_port}"] if embedded else [])


class _Lent(httpx.BaseTransport):
    """A process's shared pool lent to one client: closing the client leaves the pool (and its kept-alive
    connections) to the next one."""

    def __init__(self, pool: _ShardedPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pool.handle_request(request)

    def close(self) -> None:
        """Nothing to do: the pool outlives the client."""


class _ShardedPool(httpx.BaseTransport):
    """Several guarded pools, each thread sticking to one (taken in turn as threads first call).

    Why: httpcore's pool looks over every one of its connections at each request and each response closed
    (idle, expired, a ``poll`` of each idle socket), so with the hundreds in flight of a delivery worker's
    threads one pool spent ~13 % of the worker's time in that scan (py-spy, 1,000 deliveries at 300 ms
    latency); :data:`SHARDS` pools of a sixteenth of the connections each scan a sixteenth as many.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._shards = [GuardedTransport(policy, verify=_ssl_context(), limits=SHARD_LIMITS) for _ in range(SHARDS)]
        self._next = itertools.count()
        self._mine = threading.local()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        shard = getattr(self._mine, "shard", None)
        if shard is None:
            shard = self._mine.shard = self._shards[next(self._next) % len(self._shards)]
        return shard.handle_request(request)

    def close(self) -> None:
        for shard in self._shards:
            shard.close()


#: Kept-alive connections of the shared pools: a thread pool of a delivery worker has hundreds in flight
#: (threads x the calls of a batch side by side). Idle connections go after 4 s, before common servers' 5 s
#: (uvicorn), so a reused one is rarely closed under us. In :data:`SHARDS` shards of :data:`SHARD_LIMITS`:
#: 512 connections at most, 64 kept alive, as one pool of 256 / 64 held before the shards (the shards'
#: total is higher so that a busy shard does not make its threads wait while others have room).
SHARDS = 16
SHARD_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=4, keepalive_expiry=4.0)
_shared_pools: dict[tuple[int, AddressPolicy], _ShardedPool] = {}
_shared_lock = threading.Lock()


def shared_transport(policy: AddressPolicy | None = None) -> httpx.BaseTransport:
    """The process's guarded connection pool for ``policy`` (default: :func:`default_policy`), lent to a client.

    Why: an adapter is made per delivery, and a client of its own opened a new connection (a TLS handshake,
    two round trips to a platform) for each; a fan-out to 1,000 accounts on one platform reuses a few. Every
    connection is still opened through :class:`GuardedBackend` (the address checked when it is made), and a
    pool serves one policy only. Per process id: a forked worker never shares its parent's sockets.
    """
    key = (os.getpid(), policy or default_policy())
    with _shared_lock:
        pool = _shared_pools.get(key)
        if pool is None:
            pool = _shared_pools[key] = _ShardedPool(key[1])
    return _Lent(pool)


def guarded_client(
    base_url: str = "",
    *,
    policy: AddressPolicy | None = None,
    timeout: float = 20.0,
    max_redirects: int = 0,
    resolver: Resolver | None = None,
    headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool | None = None,
    shared: bool = False,
) -> httpx.Client:
    """An ``httpx.Client`` that reaches only what ``policy`` allows (default: :func:`default_policy`).

    ``max_redirects``: follow up to that many (each hop checked again); 0 follows none, so a redirect is an
    answer the caller sees. ``shared``: connections from the process's pool (:func:`shared_transport`; not
    with a ``resolver`` or ``verify`` of its own), kept alive across clients.
    """
    if shared and resolver is None and verify is None:
        transport: httpx.BaseTransport = shared_transport(policy)
    else:
        transport = GuardedTransport(
            policy or default_policy(), verify=_ssl_context() if verify is None else verify, resolver=resolver
        )
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        follow_redirects=max_redirects > 0,
        max_redirects=max(max_redirects, 0),
        trust_env=False,
    )


@dataclass
class Fetched:
    """A body read by :func:`fetch`: the final URL, the status, the headers and at most ``max_bytes`` bytes."""

    url: str
    status: int
    headers: httpx.Headers
    content: bytes = b""


def fetch(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    max_redirects: int = 3,
    deadline_s: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Fetched:
    """GET ``url`` with ``client`` (a :func:`guarded_client`), following up to ``max_redirects`` redirects.

    The body is read only for a 2xx answer, and never beyond ``max_bytes`` (a declared ``Content-Length``
    over it is refused before reading) or ``deadline_s`` in all. Raises :class:`OutboundRefused` for a refused
    address, too many redirects, a redirect to another scheme, a body too large or too slow; transport errors
    are ``httpx`` exceptions as usual. Non-2xx answers are returned with no body, for the caller to judge.
    """
    started = time.monotonic()
    current = httpx.URL(url)
    for _ in range(max_redirects + 1):
        if current.scheme not in ("http", "https"):
            raise OutboundRefused(f"refused: {safe_url(url)} leads to a {current.scheme}: URL")
        request = client.build_request("GET", current, headers=headers)
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect and response.next_request is not None:
                current = response.next_request.url
                continue
            fetched = Fetched(str(current), response.status_code, response.headers)
            if not response.is_success:
                return fetched
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise OutboundRefused(f"refused: {safe_url(current)} is {int(declared):,} bytes, over {max_bytes:,}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise OutboundRefused(f"refused: {safe_url(current)} is over {max_bytes:,} bytes")
                if time.monotonic() - started > deadline_s:
                    raise OutboundRefused(f"refused: {safe_url(current)} took over {deadline_s:g} s to send")
                chunks.append(chunk)
            fetched.content = b"".join(chunks)
            return fetched
        finally:
            response.close()
    raise OutboundRefused(f"refused: {safe_url(url)} redirects more than {max_redirects} times")
