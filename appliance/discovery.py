"""Zeroconf (mDNS/DNS-SD) on the LAN: the station advertises its HTTPS UI, and finds the central endpoint
when the config names none.

Service types (docs/security.md): stations ``_recterm._tcp.local.``, the central side
``_recterm-central._tcp.local.``. TXT records: ``id`` (station id), ``version``, ``scheme`` (https),
``path`` and ``key`` (signing key fingerprint, so the central side can tell a station it knows). Nothing
secret is advertised; discovery only says where to look, the TLS certificate and the signed manifests
say who answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass, field

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

STATION_TYPE = "_recterm._tcp.local."
CENTRAL_TYPE = "_recterm-central._tcp.local."


@dataclass(frozen=True)
class Found:
    name: str
    addresses: list[str]
    port: int
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        scheme = self.properties.get("scheme", "https")
        host = self.addresses[0] if self.addresses else self.name
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}{self.properties.get('path', '/')}"


def service_info(
    service_type: str, instance: str, port: int, addresses: list[str], properties: dict[str, str]
) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        service_type,
        f"{instance}.{service_type}",
        port=port,
        addresses=[ipaddress.ip_address(a).packed for a in addresses],
        properties=properties,
        server=f"{instance}.local.",
    )


def station_info(
    station_id: str, version: str, port: int, addresses: list[str], key: str, scheme: str = "https"
) -> AsyncServiceInfo:
    properties = {"id": station_id, "version": version, "scheme": scheme, "path": "/", "key": key}
    return service_info(STATION_TYPE, station_id, port, addresses, properties)


class Advertiser:
    """Keeps one service registered until closed."""

    def __init__(self, info: AsyncServiceInfo, interfaces: list[str] | None = None) -> None:
        self.info = info
        self.interfaces = interfaces

    async def __aenter__(self) -> Advertiser:
        self.zeroconf = AsyncZeroconf(interfaces=self.interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
        await self.zeroconf.async_register_service(self.info)
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):  # the network may be gone at shutdown; nothing to keep
            await self.zeroconf.async_unregister_service(self.info)
        await self.zeroconf.async_close()


async def discover(service_type: str, timeout_s: float = 3.0, interfaces: list[str] | None = None) -> list[Found]:
    """Every instance of ``service_type`` that answers within ``timeout_s``, resolved."""
    names: set[str] = set()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    azc = AsyncZeroconf(interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
    try:
        browser = AsyncServiceBrowser(azc.zeroconf, [service_type], handlers=[on_change])
        await asyncio.sleep(timeout_s)
        await browser.async_cancel()
        found = []
        for name in sorted(names):
            info = AsyncServiceInfo(service_type, name)
            if await info.async_request(azc.zeroconf, 3000):
                properties = {
                    k.decode(): (v or b"").decode("utf-8", "replace") for k, v in (info.properties or {}).items()
                }
                found.append(Found(name, info.parsed_addresses(), info.port or 0, properties))
        return found
    finally:
        await azc.async_close()


async def discover_central(timeout_s: float = 3.0, interfaces: list[str] | None = None) -> str | None:
    """The central endpoint's URL, when exactly one central service answers (two is a misconfigured LAN or
    an impostor: the station does not guess)."""
    found = await discover(CENTRAL_TYPE, timeout_s, interfaces)
    return found[0].url if len(found) == 1 else None


def lan_addresses(interfaces: list[str] | None = None) -> list[str]:
    """The addresses to advertise: those configured, else every IPv4 address but loopback."""
    if interfaces:
        return list(interfaces)
    found = {ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips if isinstance(ip.ip, str)}
    return sorted(a for a in found if not a.startswith("127."))
