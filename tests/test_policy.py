"""checks.policy: disposable / role / free flags and typo suggestions."""

from __future__ import annotations

import pytest

from checks.model import ParsedAddress, PolicyFlags
from checks.policy import (
    POPULAR_DOMAINS,
    TLD_TYPOS,
    damerau_levenshtein,
    is_disposable_domain,
    is_free_domain,
    is_role_local,
    policy_flags,
    suggest_domain,
)
from checks.syntax import parse_address


def flags(raw: str) -> PolicyFlags:
    address = parse_address(raw)
    assert isinstance(address, ParsedAddress), address
    return policy_flags(address)


# --- disposable ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "someone@mailinator.com",
    "someone@MAILINATOR.COM",
    "someone@inbox.mailinator.com",       # parent domain on the list
    "someone@guerrillamail.com",
    "someone@10minutemail.com",
])
def test_disposable(raw: str) -> None:
    assert flags(raw).disposable is True


@pytest.mark.parametrize("raw", ["a@gmail.com", "a@example.com", "a@mailinator.com.example.org"])
def test_not_disposable(raw: str) -> None:
    assert flags(raw).disposable is False


def test_disposable_never_matches_a_bare_tld() -> None:
    assert is_disposable_domain("com") is False
    assert is_disposable_domain("") is False


# --- role ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "Admin@x.com", "postmaster@x.com", "Postmaster@x.com", "ABUSE@x.com", "info@x.com",
    "support+tickets@x.com", "no-reply@x.com", "noreply@x.com", "no_reply@x.com",
    "No.Reply@x.com", "do-not-reply@x.com", "sales@x.com", "hello@x.com", "careers@x.com",
    "hr@x.com", "webmaster@x.com", "billing@x.com", "-info-@x.com", '"admin"@x.com',
    "enquiries@x.com", "inquiries@x.com", "feedback@x.com", "newsletter@x.com",
])
def test_role(raw: str) -> None:
    assert flags(raw).role is True


@pytest.mark.parametrize("raw", [
    "alice@x.com", "admin.alice@x.com", "infomaniac@x.com", "salesforce-bob@x.com",
    "bob+admin@x.com", '"john doe"@x.com', "用户@例子.广告",
])
def test_not_role(raw: str) -> None:
    assert flags(raw).role is False


def test_is_role_local_edge_cases() -> None:
    assert is_role_local("") is False
    assert is_role_local("+admin") is False
    assert is_role_local("...") is False
    assert is_role_local("ADMINISTRATOR") is True


# --- free ---------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", [
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "outlook.com",
    "hotmail.com", "hotmail.de", "live.com", "msn.com", "aol.com", "icloud.com", "me.com",
    "mac.com", "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru", "proton.me",
    "protonmail.com", "zoho.com", "qq.com", "163.com", "126.com",
])
def test_free(domain: str) -> None:
    assert flags(f"bob@{domain}").free is True
    assert is_free_domain(domain.upper()) is True


@pytest.mark.parametrize("domain", [
    "example.com", "acme.co.uk", "mail.gmail.com", "gmail.com.example.org", "yahoo.con",
    "hotmail.co",
])
def test_not_free(domain: str) -> None:
    assert is_free_domain(domain) is False


def test_free_flag_for_plain_gmail_address() -> None:
    assert flags("Bob.Smith@GMail.com") == PolicyFlags(free=True)


# --- suggestions --------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("alice@gmial.com", "alice@gmail.com"),
    ("alice@gmai.com", "alice@gmail.com"),
    ("alice@gmaill.com", "alice@gmail.com"),
    ("alice@gnail.com", "alice@gmail.com"),
    ("alice@gmail.co", "alice@gmail.com"),
    ("bob@yahoo.con", "bob@yahoo.com"),
    ("bob@yaho.com", "bob@yahoo.com"),
    ("bob@yahooo.com", "bob@yahoo.com"),
    ("Bob@hotmial.com", "Bob@hotmail.com"),
    ("bob@hotmial.con", "bob@hotmail.com"),
    ("bob@outlok.com", "bob@outlook.com"),
    ("bob@iclod.com", "bob@icloud.com"),
    ("bob@comcast.ner", "bob@comcast.net"),
    ("bob@protonmail.con", "bob@protonmail.com"),
    ("bob@acme.cmo", "bob@acme.com"),
    ("bob@acme.comm", "bob@acme.com"),
    ("bob@acme.c0m", "bob@acme.com"),
    ("bob@acme.om", "bob@acme.com"),
    ("bob@acme.nte", "bob@acme.net"),
    ("bob@acme.orh", "bob@acme.org"),
    ("bob@mail.acme.con", "bob@mail.acme.com"),
    ('"j d"@gmial.com', '"j d"@gmail.com'),
])
def test_suggestion(raw: str, expected: str) -> None:
    assert flags(raw).suggestion == expected


@pytest.mark.parametrize("raw", [
    "alice@gmail.com",        # exactly a known provider
    "alice@GMAIL.COM",
    "alice@yahoo.com",
    "alice@ymail.com",        # one edit from gmail.com, but itself a provider
    "alice@mail.com",
    "alice@email.com",
    "alice@gmx.net",
    "alice@hotmail.de",
    "alice@live.fr",
    "alice@example.org",      # nothing close
    "alice@example.com",
    "alice@acme.co",          # .co is a real TLD
    "alice@company.io",
    "alice@gmx.co.uk",
])
def test_no_suggestion(raw: str) -> None:
    assert flags(raw).suggestion is None


def test_short_domains_need_distance_one() -> None:
    assert suggest_domain("aol.co") == "aol.com"     # distance 1
    assert suggest_domain("al.co") is None           # distance 2 from aol.com: too far
    assert suggest_domain("msn.cm") == "msn.com"
    assert suggest_domain("mns.com") == "msn.com"    # transposition counts as one edit


def test_suggestion_lists_are_consistent() -> None:
    for domain in POPULAR_DOMAINS:
        assert suggest_domain(domain) is None, domain
    for typo, fixed in TLD_TYPOS.items():
        assert typo != fixed
        assert suggest_domain(f"acme.{typo}") == f"acme.{fixed}"


# --- the distance -------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "distance"), [
    ("", "", 0),
    ("abc", "", 3),
    ("", "abc", 3),
    ("abc", "abc", 0),
    ("abc", "acb", 1),          # transposition
    ("gmial.com", "gmail.com", 1),
    ("gmai.com", "gmail.com", 1),
    ("gmaill.com", "gmail.com", 1),
    ("hotmial.con", "hotmail.com", 2),
    ("kitten", "sitting", 3),
    ("ca", "abc", 3),           # optimal string alignment (restricted) variant
])
def test_damerau_levenshtein(a: str, b: str, distance: int) -> None:
    assert damerau_levenshtein(a, b) == distance
    assert damerau_levenshtein(b, a) == distance


def test_full_flags_combination() -> None:
    assert flags("Admin@mailinator.com") == PolicyFlags(disposable=True, role=True)
    assert flags("support@gmail.com") == PolicyFlags(role=True, free=True)
    typo = flags("info@hotmial.con")
    assert (typo.role, typo.free, typo.suggestion) == (True, False, "info@hotmail.com")
    # typo domains are often registered by typo-squatters and blocklisted as disposable
    # (gmial.com is): the flags are independent, the suggestion is still given
    squatted = flags("info@gmial.com")
    assert squatted.suggestion == "info@gmail.com"
    assert squatted.disposable is is_disposable_domain("gmial.com")


def test_bounded_distance_agrees_with_the_full_walk_within_the_limit() -> None:
    """The early exit of ``damerau_levenshtein(limit=)`` never changes a distance within the
    limit, and never reports one above it as within (random strings over a small alphabet,
    so transpositions and repeats are common)."""
    import random

    rng = random.Random(14)
    for _ in range(5000):
        a = "".join(rng.choice("ab.c") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("ab.c") for _ in range(rng.randint(0, 9)))
        full = damerau_levenshtein(a, b)
        for limit in (0, 1, 2, 3):
            bounded = damerau_levenshtein(a, b, limit)
            assert bounded == full if full <= limit else bounded > limit, (a, b, limit)
