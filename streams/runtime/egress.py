"""Egress policy for webhooks: resolve once, check every address, dial exactly the checked one.

Webhook URLs come from users, so a delivery is a request the user aims at whatever the
dispatcher can reach: cloud metadata, the database, the broker. Following stripe's
smokescreen, the check happens **at connect time** on the resolved address, not on the
URL when a subscription is saved: DNS may answer differently between a check and a later
connection (DNS rebinding), so the address that is checked is the address that is dialled.
For ``http`` the request URL carries that IP and the ``Host`` header the name; for
``https`` the TLS handshake is given the name (SNI, ``sni_hostname``), so the certificate
is verified against the name the user gave, not against the IP.

URLs are parsed with the same parser (``httpx2.URL``) as the client that sends them: a
policy that validates with one parser and fetches with another invites parser
differentials. Every blocked range is listed here explicitly, not taken from
``ipaddress``'s ``is_global``, whose tables change between Python patch releases.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from streams.config import IPNetwork, Settings
from streams.errors import InvalidWebhookUrl, WebhookTargetBlocked, WebhookTargetUnresolvable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``; the real one is ``system_resolver`` (``getaddrinfo``)."""

_N4 = ipaddress.IPv4Network
_N6 = ipaddress.IPv6Network

CLOUD_METADATA: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean instance metadata
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure WireServer: a public address, so no range below covers it
        "100.100.100.200",  # Alibaba Cloud metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
    )
)
"""Never dialled, whatever ``allow_networks`` says."""

_BLOCKED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_N4("0.0.0.0/8"), "unspecified"),  # Linux routes 0.0.0.0 to the local host
    (_N4("10.0.0.0/8"), "private"),
    (_N4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_N4("127.0.0.0/8"), "loopback"),
    (_N4("169.254.0.0/16"), "link-local"),
    (_N4("172.16.0.0/12"), "private"),
    (_N4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_N4("192.0.2.0/24"), "documentation"),
    (_N4("192.88.99.0/24"), "reserved"),  # former 6to4 relay anycast
    (_N4("192.168.0.0/16"), "private"),
    (_N4("198.18.0.0/15"), "benchmarking"),
    (_N4("198.51.100.0/24"), "documentation"),
    (_N4("203.0.113.0/24"), "documentation"),
    (_N4("224.0.0.0/4"), "multicast"),
    (_N4("240.0.0.0/4"), "reserved"),  # includes the broadcast address
)

_BLOCKED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_N6("::/128"), "unspecified"),
    (_N6("::1/128"), "loopback"),
    (_N6("::/96"), "reserved"),  # IPv4-compatible addresses, deprecated
    (_N6("100::/64"), "reserved"),  # discard-only
    (_N6("64:ff9b:1::/48"), "reserved"),  # local-use NAT64: where it leads is site-specific
    (_N6("2001::/23"), "reserved"),  # IETF protocol assignments, Teredo included
    (_N6("2001:db8::/32"), "documentation"),
    (_N6("3fff::/20"), "documentation"),
    (_N6("fc00::/7"), "private"),  # unique local addresses
    (_N6("fe80::/10"), "link-local"),
    (_N6("fec0::/10"), "site-local"),
    (_N6("ff00::/8"), "multicast"),
)

_HOSTNAME = re.compile(r"(?i)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?")
"""Letters, digits, hyphens (and underscores, seen in the wild), after IDNA encoding."""
_NAT64 = _N6("64:ff9b::/96")
_SIXTOFOUR = _N6("2002::/16")
_GLOBAL_UNICAST_V6 = _N6("2000::/3")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address leads to."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIXTOFOUR:
        return ip.sixtofour
    return None


def blocked_reason(ip: IPAddress, allow_networks: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``ip`` must not be dialled (``"private"``, ``"loopback"``…), or None if it may be.

    ``allow_networks`` admits addresses in otherwise blocked ranges (a receiver on
    127.0.0.1 in tests, an internal endpoint in a trusted deployment); cloud metadata
    addresses stay blocked regardless. An IPv6 address that embeds an IPv4 one (mapped,
    NAT64, 6to4) is judged by the IPv4 address it leads to.
    """
    if ip in CLOUD_METADATA:
        return "cloud metadata"
    if any(ip.version == net.version and ip in net for net in allow_networks):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return next((label for net, label in _BLOCKED_V4 if ip in net), None)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = blocked_reason(embedded, allow_networks)
        if reason is not None or ip.ipv4_mapped is not None or ip in _NAT64:
            return reason
    label = next((label for net, label in _BLOCKED_V6 if ip in net), None)
    if label is None and ip not in _GLOBAL_UNICAST_V6:
        return "reserved"  # outside 2000::/3 nothing is assigned for global unicast
    return label


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host``, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


@dataclass(frozen=True)
class PinnedTarget:
    """A webhook URL with the addresses it may be dialled at, every one already checked."""

    url: httpx2.URL
    host: str
    """The name in the URL (IDNA-encoded), or the IP literal."""
    addresses: tuple[IPAddress, ...]
    """Resolved once, in the resolver's order; each passed the egress policy."""

    def url_for(self, address: IPAddress) -> httpx2.URL:
        return self.url.copy_with(host=str(address))

    def headers(self) -> dict[str, str]:
        """The ``Host`` header naming the original host (the URL now names an IP)."""
        if self._is_ip_literal:
            return {}
        return {"host": self.host if self.url.port is None else f"{self.host}:{self.url.port}"}

    def extensions(self) -> dict[str, Any]:
        """For https, the TLS server name: certificate checked against the host, not the IP."""
        if self.url.scheme == "https" and not self._is_ip_literal:
            return {"sni_hostname": self.host}
        return {}

    @property
    def _is_ip_literal(self) -> bool:
        return _ip_literal(self.host) is not None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_target(url: str) -> httpx2.URL:
    """Validate a webhook URL: absolute http(s), a host, no credentials in it."""
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError, ValueError):
        raise InvalidWebhookUrl("invalid url: cannot be parsed") from None
    if parsed.scheme not in {"http", "https"}:
        raise InvalidWebhookUrl("invalid url: scheme must be http or https")
    if not parsed.host:
        raise InvalidWebhookUrl("invalid url: no host")
    if parsed.userinfo:
        raise InvalidWebhookUrl("invalid url: credentials in the url are not allowed")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if _ip_literal(host) is None and not _HOSTNAME.fullmatch(host):
        raise InvalidWebhookUrl("invalid url: the host is not a DNS name or an IP address")
    return parsed


@dataclass(frozen=True, kw_only=True)
class EgressGuard:
    """Decides where webhooks may connect; ``pin`` is called once per attempt.

    ``resolver`` is the one seam (the default asks the system's resolver); tests replace
    it to answer like a rebinding DNS server would.
    """

    allow_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, repr=False, compare=False)

    def check(self, ip: IPAddress | str, host: str | None = None) -> None:
        """Raise ``WebhookTargetBlocked`` when ``ip`` may not be dialled."""
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        reason = blocked_reason(address, self.allow_networks)
        if reason is not None:
            via = f" (from {host})" if host and host != str(address) else ""
            raise WebhookTargetBlocked(f"blocked: {address} is {reason}{via}")

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressGuard:
        """The guard for ``DARKROOM_WEBHOOK_ALLOW_NETWORKS``."""
        return cls(allow_networks=settings.webhook_allow_networks)

    def admit(self, url: str, *, resolve: bool = True) -> None:
        """Refuse a target where it enters (subscribe, submit, an upload's callback).

        Same policy and codes as an attempt, so a bad target fails at the door instead of
        as an exhausted delivery later. The check at connect time (``pin``) still decides:
        DNS may answer otherwise by then. Without ``resolve`` only IP literals are checked,
        so a worker's hot path never waits on DNS.
        """
        if resolve:
            self.pin(url)
            return
        literal = _ip_literal(parse_target(url).raw_host.decode("ascii"))
        if literal is not None:
            self.check(_unmapped(literal))

    def pin(self, url: str) -> PinnedTarget:
        """Validate ``url``, resolve its host once and check every address it resolves to.

        One blocked address blocks the target: a name that also points inside the
        network is not a webhook endpoint.
        """
        parsed = parse_target(url)
        host = parsed.raw_host.decode("ascii")
        literal = _ip_literal(host)
        if literal is not None:
            answers: Sequence[str] = [str(literal)]
        else:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                answers = self.resolver(host, port)
            except (OSError, UnicodeError):
                raise WebhookTargetUnresolvable(f"dns: cannot resolve {host}") from None
            if not answers:
                raise WebhookTargetUnresolvable(f"dns: no address for {host}")
        addresses = tuple(dict.fromkeys(_unmapped(ipaddress.ip_address(a)) for a in answers))
        for address in addresses:
            self.check(address, host)
        return PinnedTarget(url=parsed, host=host, addresses=addresses)


def _unmapped(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is dialled as the IPv4 address it was checked as."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
