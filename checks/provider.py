"""Which mailbox provider runs a domain's mail, from its MX host names. Pure logic.

A user sorting a list wants to know that ``acme.com`` is on Google Workspace or behind
Proofpoint: providers behave alike across all their domains (texts, limits, catch-all
habits). The answer is the first MX host (in preference order) whose name ends in a
known suffix; ``None`` when none does (a company's own server).

>>> provider_of(["alt1.aspmx.l.google.com", "aspmx.l.google.com"])
'google'
>>> provider_of(["acme-com.mail.protection.outlook.com"])
'microsoft'
>>> provider_of(["mx.acme.example"]) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PROVIDERS", "provider_of"]

#: provider → MX host name suffixes (matched on whole labels)
PROVIDERS: dict[str, tuple[str, ...]] = {
    "google": ("google.com", "googlemail.com", "smtp.goog"),
    "microsoft": ("outlook.com", "hotmail.com", "protection.outlook.com", "outlook.cn"),
    "yahoo": ("yahoodns.net", "yahoo.com"),
    "icloud": ("icloud.com", "me.com"),
    "zoho": ("zoho.com", "zoho.eu", "zoho.in", "zohomail.com"),
    "fastmail": ("messagingengine.com",),
    "proton": ("protonmail.ch", "proton.ch"),
    "yandex": ("yandex.net", "yandex.ru"),
    "mailru": ("mail.ru",),
    "gmx": ("gmx.net", "gmx.com", "web.de", "1and1.com", "ionos.com", "kundenserver.de"),
    "proofpoint": ("pphosted.com", "ppe-hosted.com", "proofpoint.com"),
    "mimecast": ("mimecast.com", "mimecast.co.za"),
    "barracuda": ("barracudanetworks.com", "cudamail.com"),
    "cisco": ("iphmx.com",),
    "amazon": ("amazonaws.com", "awsapps.com"),
    "godaddy": ("secureserver.net",),
    "ovh": ("ovh.net",),
}

_BY_SUFFIX = sorted(((suffix, name) for name, suffixes in PROVIDERS.items()
                     for suffix in suffixes), key=lambda p: -len(p[0]))


def provider_of(mx_hosts: Iterable[str]) -> str | None:
    """The provider of the first host (in the order given) with a known suffix."""
    for host in mx_hosts:
        name = host.rstrip(".").lower()
        for suffix, provider in _BY_SUFFIX:
            if name == suffix or name.endswith("." + suffix):
                return provider
    return None
