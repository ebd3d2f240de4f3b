"""Which addresses the engine may open connections to.

By default only public unicast addresses are contactable; operators (and the simulated
test world) can allow more with explicit networks.

>>> is_contactable("8.8.8.8", [])
True
>>> is_contactable("127.0.0.1", [])
False
>>> import ipaddress
>>> is_contactable("127.0.0.1", [ipaddress.ip_network("127.0.0.0/8")])
True
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["is_contactable", "is_public_unicast"]


def is_public_unicast(ip: str) -> bool:
    """True for a globally routable unicast address.

    IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are judged by their IPv4 address;
    anything that does not parse is not public.

    >>> [is_public_unicast(a) for a in ("93.184.216.34", "2606:4700::1111")]
    [True, True]
    >>> [is_public_unicast(a) for a in ("10.1.2.3", "192.168.0.1", "100.64.0.1", "169.254.1.1")]
    [False, False, False, False]
    >>> [is_public_unicast(a) for a in ("0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255")]
    [False, False, False, False]
    >>> [is_public_unicast(a) for a in ("::", "::1", "fe80::1", "fc00::1", "ff02::1")]
    [False, False, False, False, False]
    >>> [is_public_unicast(a) for a in ("::ffff:127.0.0.1", "::ffff:8.8.8.8", "mx.example", "")]
    [False, True, False, False]
    """
    addr = _parse(ip)
    if addr is None:
        return False
    return bool(
        addr.is_global
        and not addr.is_multicast
        and not addr.is_reserved
        and not addr.is_unspecified
        and not addr.is_loopback
        and not addr.is_link_local
    )


def is_contactable(ip: str, allowed: Sequence[IPv4Network | IPv6Network]) -> bool:
    """True when ``ip`` is public unicast or inside one of the ``allowed`` networks.

    >>> import ipaddress
    >>> lab = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    >>> is_contactable("10.9.9.9", lab), is_contactable("fd12::1", lab)
    (True, True)
    >>> is_contactable("192.168.1.1", lab), is_contactable("::ffff:10.0.0.1", lab)
    (False, True)
    >>> is_contactable("not-an-ip", lab)
    False
    """
    addr = _parse(ip)
    if addr is None:
        return False
    if is_public_unicast(str(addr)):
        return True
    return any(addr.version == net.version and addr in net for net in allowed)


def _parse(ip: str) -> IPv4Address | IPv6Address | None:
    """The address, with IPv4-mapped IPv6 unwrapped and any ``%zone`` kept out; else None."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, IPv6Address):
        if addr.scope_id is not None:
            addr = IPv6Address(str(addr).split("%", 1)[0])
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
    return addr
