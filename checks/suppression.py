"""The suppression list's keys: domains and addresses that are never probed (no I/O here).

An entry is a domain (``example.com``: it and every name under it, ``mail.example.com``
too) or an address (``jane@example.com``: that mailbox, matched by its dedupe key, so
``Jane@Example.COM`` is the same). Stored as ``domain:<ascii domain>`` and
``address:<dedupe key>``; an address is suppressed when any of :func:`candidates` is on
the list. The list itself lives in Redis (``sinks.redis_suppression``), shared by every
worker, checked by intake before any DNS or SMTP traffic.

>>> entry_key("Example.COM."), entry_key("Jane@Example.COM")
('domain:example.com', 'address:jane@example.com')
>>> from checks.syntax import parse_address
>>> candidates(parse_address("ann@mail.example.com"))
['address:ann@mail.example.com', 'domain:mail.example.com', 'domain:example.com', 'domain:com']
"""

from __future__ import annotations

import re

from checks.model import AddressProblem, ParsedAddress
from checks.syntax import parse_address

__all__ = ["entry_key", "candidates", "entry_text"]

_LABELS = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def entry_key(text: str) -> str:
    """The stored key of a user's entry; ValueError (one line) when it is neither a domain
    nor an address.

    >>> entry_key("bücher.de")
    'domain:xn--bcher-kva.de'
    >>> entry_key("not a domain")
    Traceback (most recent call last):
    ValueError: 'not a domain' is neither a domain nor an address
    """
    value = text.strip()
    if "@" in value:
        parsed = parse_address(value, allow_test_tld=True)
        if isinstance(parsed, AddressProblem):
            raise ValueError(f"{value!r} is not an address: {parsed.message}")
        return f"address:{parsed.dedupe_key}"
    domain = value.lower().rstrip(".")
    # the IDNA form the addresses get (UTS-46 non-transitional, as email_validator makes
    # it: ß stays ß), not the codec's IDNA 2003 (which makes straße strasse)
    as_address = parse_address(f"x@{domain}", allow_test_tld=True) if domain else None
    ascii_domain = as_address.ascii_domain if isinstance(as_address, ParsedAddress) else ""
    if not ascii_domain or len(ascii_domain) > 253 or not _LABELS.match(ascii_domain):
        raise ValueError(f"{value!r} is neither a domain nor an address")
    return f"domain:{ascii_domain}"


def entry_text(key: str) -> str:
    """What a stored key is to a user (``domain:example.com`` → ``example.com``).

    >>> entry_text("address:jane@example.com")
    'jane@example.com'
    """
    return key.partition(":")[2]


def candidates(parsed: ParsedAddress) -> list[str]:
    """The keys that suppress ``parsed``: its address, its domain and every parent."""
    labels = parsed.ascii_domain.lower().split(".")
    return [f"address:{parsed.dedupe_key}",
            *(f"domain:{'.'.join(labels[i:])}" for i in range(len(labels)))]
