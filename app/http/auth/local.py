"""Which clients count as this machine: those identity headers are trusted from without a secret.

In development, `X-User-Id` without `AUTH_PROXY_SECRET` is accepted from loopback clients only,
plus the networks of `AUTH_HEADERS_ALLOWED_NETWORKS` (Docker Compose's bridge: the host's
requests reach a container from the bridge gateway, not from loopback). A request that carries
forwarding headers came through a proxy, so it never counts as local, whatever its address:
with `--forwarded-allow-ips '*'` (the image) its address is whatever the client wrote.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import Scope

from app.config import Settings

FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class LocalClients:
    networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalClients:
        networks = settings.auth_headers_allowed_networks
        return cls(tuple(ipaddress.ip_network(net, strict=False) for net in networks))

    def contains(self, scope: Scope) -> bool:
        """Whether the request's client is on this machine (or an allowed network)."""
        if _forwarded(scope):
            return False
        address = client_address(scope)
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or any(ip in network for network in self.networks)

    def refusal(self, scope: Scope) -> str | None:
        """Why the request gets no identity from headers (for its 401); None when it is local."""
        if self.contains(scope):
            return None
        came_from = (
            "a proxy" if _forwarded(scope) else client_address(scope) or "an unknown address"
        )
        return (
            "Identity headers without AUTH_PROXY_SECRET are accepted only from this machine "
            f"(loopback) or AUTH_HEADERS_ALLOWED_NETWORKS; this request came from {came_from}. "
            "Configure a token method (AUTH_JWKS_URL or AUTH_JWT_SECRET), or AUTH_PROXY_SECRET "
            "for a proxy that sends it as X-Proxy-Secret"
        )


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _forwarded(scope: Scope) -> bool:
    headers = Headers(raw=list(scope.get("headers", ())))
    return any(name in headers for name in FORWARDING_HEADERS)
