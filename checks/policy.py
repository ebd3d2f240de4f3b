"""List-hygiene flags that need no network: disposable, role, free provider, typo fix.

Pure logic, no I/O besides reading the package's own data files once
(``checks/data/role_accounts.txt`` and ``checks/data/free_providers.txt``, via
:mod:`importlib.resources`).

* **disposable** — the ASCII domain, or any parent domain of it (``x.mailinator.com``), is
  on the ``disposable_email_domains`` blocklist and not on its allowlist.
* **role** — the local part is a role mailbox (``admin``, ``postmaster``, ``no-reply``…).
  Matching: casefold, drop surrounding quotes, drop a ``+tag`` sub-address, strip
  ``.``/``-``/``_`` at the edges and ignore them inside (``No_Reply+x`` matches
  ``noreply``).
* **free** — the domain is a free mailbox provider (``gmail.com``, ``yahoo.co.uk``…). The
  data file lists every country variant explicitly (``yahoo.fr``, ``hotmail.de``…) rather
  than a ``yahoo.*`` pattern: without a TLD list a pattern would also match typos such as
  ``yahoo.con`` or ``hotmail.co``.
* **suggestion** — a corrected address when the domain looks like a typo of a popular
  provider (Damerau–Levenshtein distance ≤ 2, ≤ 1 for short domains) or ends in a
  mistyped TLD (``.con``, ``.cmo``…); ``None`` for known providers and unrelated domains.

>>> from checks.syntax import parse_address
>>> policy_flags(parse_address("Admin@mailinator.com"))
PolicyFlags(disposable=True, role=True, free=False, suggestion=None)
>>> policy_flags(parse_address("alice@gmial.com")).suggestion
'alice@gmail.com'
"""

from __future__ import annotations

import functools
from importlib import resources

from disposable_email_domains import allowlist as _DISPOSABLE_ALLOW
from disposable_email_domains import blocklist as _DISPOSABLE_BLOCK

from checks.model import ParsedAddress, PolicyFlags

__all__ = [
    "POPULAR_DOMAINS", "TLD_TYPOS", "damerau_levenshtein", "is_disposable_domain",
    "is_free_domain", "is_role_local", "policy_flags", "suggest_domain",
]

#: targets of typo suggestions, most popular first (ties go to the earlier entry)
POPULAR_DOMAINS: tuple[str, ...] = (
    "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com",
    "live.com", "msn.com", "comcast.net", "googlemail.com", "hotmail.co.uk", "yahoo.co.uk",
    "proton.me", "protonmail.com", "gmx.de", "gmx.net", "gmx.com", "web.de", "yandex.ru",
    "mail.ru", "t-online.de", "orange.fr", "wanadoo.fr", "free.fr", "libero.it",
    "sbcglobal.net", "verizon.net", "att.net", "bellsouth.net", "me.com", "mac.com",
    "ymail.com", "rocketmail.com", "qq.com", "163.com", "126.com", "zoho.com",
    "fastmail.com", "btinternet.com",
)

#: mistyped top-level domains and their fix (only strings that are not real TLDs, except
#: ``om`` (Oman), which in address lists is nearly always a clipped ``com``)
TLD_TYPOS: dict[str, str] = {
    "con": "com", "cmo": "com", "ocm": "com", "comm": "com", "coom": "com", "c0m": "com",
    "cim": "com", "cpm": "com", "vom": "com", "xom": "com", "clm": "com", "cok": "com",
    "om": "com",
    "ner": "net", "nte": "net", "nett": "net", "ent": "net", "nwt": "net", "met": "net",
    "orh": "org", "ogr": "org", "rog": "org", "prg": "org", "otg": "org", "orgg": "org",
}

_SEPARATORS = ".-_"
_SHORT_DOMAIN = 8  # domains this long or shorter only get suggestions at distance 1


def policy_flags(address: ParsedAddress) -> PolicyFlags:
    """All network-free flags for one parsed address.

    >>> from checks.syntax import parse_address
    >>> policy_flags(parse_address("Bob.Smith@GMail.com"))
    PolicyFlags(disposable=False, role=False, free=True, suggestion=None)
    >>> policy_flags(parse_address("bob@yahoo.con"))
    PolicyFlags(disposable=False, role=False, free=False, suggestion='bob@yahoo.com')
    >>> policy_flags(parse_address("postmaster@example.org"))
    PolicyFlags(disposable=False, role=True, free=False, suggestion=None)
    """
    domain = suggest_domain(address.domain)
    return PolicyFlags(
        disposable=is_disposable_domain(address.ascii_domain),
        role=is_role_local(address.local),
        free=is_free_domain(address.domain) or is_free_domain(address.ascii_domain),
        suggestion=None if domain is None else f"{address.local}@{domain}",
    )


def is_disposable_domain(ascii_domain: str) -> bool:
    """Whether the domain or one of its parents is a known disposable-mail domain.

    >>> is_disposable_domain("mailinator.com"), is_disposable_domain("x.mailinator.com")
    (True, True)
    >>> is_disposable_domain("example.com")
    False
    """
    labels = ascii_domain.lower().rstrip(".").split(".")
    for i in range(len(labels) - 1):  # every suffix of at least two labels
        candidate = ".".join(labels[i:])
        if candidate in _DISPOSABLE_ALLOW:
            return False
        if candidate in _DISPOSABLE_BLOCK:
            return True
    return False


def is_role_local(local: str) -> bool:
    """Whether a local part names a role rather than a person.

    >>> is_role_local("Admin"), is_role_local("no_reply+list"), is_role_local("alice")
    (True, True, False)
    """
    base = local.strip('"').casefold().split("+", 1)[0].strip(_SEPARATORS)
    return bool(base) and _squash(base) in _role_accounts()


def is_free_domain(domain: str) -> bool:
    """Whether the domain is a free mailbox provider (exact match; subdomains do not count).

    >>> is_free_domain("gmail.com"), is_free_domain("yahoo.co.uk"), is_free_domain("acme.com")
    (True, True, False)
    >>> is_free_domain("yahoo.con"), is_free_domain("mail.gmail.com")
    (False, False)
    """
    return domain.lower().rstrip(".") in _free_providers()


@functools.lru_cache(maxsize=65536)  # a list repeats its domains: decide each one once
def suggest_domain(domain: str) -> str | None:
    """A likely intended domain for a mistyped one, or ``None``.

    >>> suggest_domain("gmial.com"), suggest_domain("hotmial.con"), suggest_domain("acme.cmo")
    ('gmail.com', 'hotmail.com', 'acme.com')
    >>> suggest_domain("gmail.com") is None, suggest_domain("example.org") is None
    (True, True)
    """
    domain = domain.lower().rstrip(".")
    if _is_known(domain):
        return None
    best = _closest_popular(domain)
    if best is not None:
        return best
    head, dot, tld = domain.rpartition(".")
    if dot and head and tld in TLD_TYPOS:
        fixed = f"{head}.{TLD_TYPOS[tld]}"
        if _is_known(fixed):
            return fixed
        return _closest_popular(fixed) or fixed
    return None


def damerau_levenshtein(a: str, b: str, limit: int | None = None) -> int:
    """Edit distance counting insertions, deletions, substitutions and transpositions of
    adjacent characters (optimal string alignment variant).

    >>> damerau_levenshtein("gmial.com", "gmail.com")
    1
    >>> damerau_levenshtein("yaho.con", "yahoo.com")
    2
    >>> damerau_levenshtein("", "abc"), damerau_levenshtein("same", "same")
    (3, 0)

    With ``limit``, a distance above it may be reported as ``limit + 1`` (the walk stops
    at the first row whose every cell exceeds it: the distance cannot shrink after that).

    >>> damerau_levenshtein("bulk17.test", "gmail.com", limit=2)
    3
    """
    if a == b:
        return 0
    if not a or not b:
        return len(a) or len(b)
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if limit is not None and min(cur) > limit:  # a transposition from two rows back
            # costs at least the diagonal cell of this row, so no later cell comes back
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _closest_popular(domain: str) -> str | None:
    best: str | None = None
    best_distance = 3
    for candidate in POPULAR_DOMAINS:
        limit = 1 if min(len(domain), len(candidate)) <= _SHORT_DOMAIN else 2
        if abs(len(domain) - len(candidate)) > limit:
            continue
        distance = damerau_levenshtein(domain, candidate, limit)
        if 0 < distance <= limit and distance < best_distance:
            best, best_distance = candidate, distance
    return best


def _is_known(domain: str) -> bool:
    return domain in POPULAR_DOMAINS or is_free_domain(domain)


def _squash(value: str) -> str:
    return "".join(c for c in value if c not in _SEPARATORS)


def _read_list(name: str) -> list[str]:
    text = resources.files("checks.data").joinpath(name).read_text(encoding="utf-8")
    entries = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return [e for e in entries if e]


@functools.cache
def _role_accounts() -> frozenset[str]:
    return frozenset(_squash(e) for e in _read_list("role_accounts.txt"))


@functools.cache
def _free_providers() -> frozenset[str]:
    return frozenset(_read_list("free_providers.txt"))
