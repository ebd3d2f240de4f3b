"""checks.syntax: parsing, validation and normalization of one raw address."""

from __future__ import annotations

import random
import string

import pytest

from checks.model import AddressProblem, ParsedAddress
from checks.syntax import MAX_INPUT_LENGTH, _parse, _plain, parse_address


def ok(raw: str, **kw: bool) -> ParsedAddress:
    result = parse_address(raw, **kw)
    assert isinstance(result, ParsedAddress), f"{raw!r} rejected: {result}"
    return result


def bad(raw: str, **kw: bool) -> AddressProblem:
    result = parse_address(raw, **kw)
    assert isinstance(result, AddressProblem), f"{raw!r} accepted: {result}"
    assert result.original == raw
    assert result.message and result.message.endswith(".")
    assert "\n" not in result.message
    return result


# --- valid inputs -------------------------------------------------------------------------

def test_plain_address() -> None:
    p = ok("alice@example.com")
    assert p.original == "alice@example.com"
    assert (p.local, p.domain, p.ascii_domain) == ("alice", "example.com", "example.com")
    assert p.normalized == "alice@example.com"
    assert p.ascii_address == "alice@example.com"
    assert p.display_name is None
    assert p.smtputf8 is False
    assert p.dedupe_key == "alice@example.com"


def test_plus_tag_kept() -> None:
    p = ok("alice+news@example.com")
    assert p.local == "alice+news"
    assert p.dedupe_key == "alice+news@example.com"


def test_atext_specials_in_local_part() -> None:
    assert ok("o'brien@example.ie").local == "o'brien"
    assert ok("a!#$%&'*/=?^_`{|}~-b@example.com").local == "a!#$%&'*/=?^_`{|}~-b"


def test_quoted_local_part_kept_quoted_when_needed() -> None:
    p = ok('"john doe"@example.com')
    assert p.local == '"john doe"'
    assert p.normalized == '"john doe"@example.com'
    assert p.ascii_address == '"john doe"@example.com'


def test_quoted_local_part_with_specials() -> None:
    assert ok('"a,b"@example.com').local == '"a,b"'
    assert ok('"a@b"@example.com').local == '"a@b"'
    assert ok('"a\\"b"@example.com').local == '"a\\"b"'


def test_needless_quotes_are_removed() -> None:
    assert ok('"john"@example.com').local == "john"


def test_idna_domain() -> None:
    p = ok("user@bücher.de")
    assert p.domain == "bücher.de"
    assert p.ascii_domain == "xn--bcher-kva.de"
    assert p.ascii_address == "user@xn--bcher-kva.de"
    assert p.smtputf8 is False  # only the local part needs SMTPUTF8
    assert p.dedupe_key == "user@xn--bcher-kva.de"


def test_a_label_input_gives_unicode_domain() -> None:
    p = ok("user@XN--BCHER-KVA.de")
    assert (p.domain, p.ascii_domain) == ("bücher.de", "xn--bcher-kva.de")
    assert p.dedupe_key == ok("user@bücher.de").dedupe_key


def test_smtputf8_local_part() -> None:
    p = ok("用户@例子.广告")
    assert p.local == "用户"
    assert p.domain == "例子.广告"
    assert p.ascii_domain == "xn--fsqu00a.xn--4rr70v"
    assert p.smtputf8 is True
    assert p.ascii_address == "用户@xn--fsqu00a.xn--4rr70v"


def test_display_name_form() -> None:
    p = ok("Alice Example <alice@example.com>")
    assert p.display_name == "Alice Example"
    assert p.normalized == "alice@example.com"
    assert p.original == "Alice Example <alice@example.com>"


def test_display_name_variants() -> None:
    assert ok('"Smith, John" <j@example.com>').display_name == "Smith, John"
    assert ok("J. R. Smith <j@example.com>").display_name == "J. R. Smith"
    assert ok("Jörg <j@example.de>").display_name == "Jörg"
    assert ok("Name<a@b.com>").display_name == "Name"
    assert ok('x <"a b"@example.com>').local == '"a b"'


def test_bare_angle_brackets() -> None:
    p = ok("<alice@example.com>")
    assert p.display_name is None
    assert p.normalized == "alice@example.com"


def test_surrounding_whitespace_trimmed() -> None:
    p = ok("  \u00a0alice@example.com  ")
    assert p.normalized == "alice@example.com"
    assert ok("   Bob <bob@example.com>   ").display_name == "Bob"


def test_domain_lower_cased_local_case_kept() -> None:
    p = ok("Alice.Smith@Example.COM")
    assert p.local == "Alice.Smith"
    assert p.domain == "example.com"
    assert p.ascii_domain == "example.com"
    assert p.normalized == "Alice.Smith@example.com"
    assert p.ascii_address == "Alice.Smith@example.com"


def test_unicode_domain_lower_cased() -> None:
    p = ok("user@BÜCHER.DE")
    assert p.domain == "bücher.de"
    assert p.ascii_domain == "xn--bcher-kva.de"


def test_rfc2142_names_lower_cased_by_email_validator() -> None:
    assert ok("Postmaster@Example.com").local == "postmaster"


def test_length_limits_boundaries() -> None:
    assert ok("a" * 64 + "@example.com").local == "a" * 64
    assert ok("é" * 32 + "@example.com").smtputf8  # 64 octets in UTF-8
    label = "a" * 63
    assert ok(f"x@{label}.com").ascii_domain == f"{label}.com"
    # 254 octets exactly: 64 + 1 + 189
    domain = ".".join(["b" * 61, "c" * 61, "d" * 61]) + ".com"
    assert len(domain) == 189
    assert len(ok("a" * 64 + "@" + domain).normalized) == 254


# --- dedupe keys --------------------------------------------------------------------------

def test_dedupe_key_case_insensitive() -> None:
    a = ok("Alice@Example.COM")
    b = ok("alice@example.com")
    c = ok("ALICE <alice@EXAMPLE.com>")
    assert a.dedupe_key == b.dedupe_key == c.dedupe_key == "alice@example.com"
    assert a.normalized != b.normalized  # the local part itself is kept as given


def test_dedupe_key_distinguishes_tags_and_domains() -> None:
    assert ok("alice+x@example.com").dedupe_key != ok("alice@example.com").dedupe_key
    assert ok("alice@example.org").dedupe_key != ok("alice@example.com").dedupe_key


def test_dedupe_key_casefolds_unicode() -> None:
    assert ok("STRASSE@example.de").dedupe_key == ok("straße@example.de").dedupe_key


# --- invalid inputs -----------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "",
    "   ",
    "alice.example.com",                  # missing @
    "a@b@example.com",                    # two @
    "@example.com",                       # empty local part
    "alice@",                             # empty domain
    "a" * 65 + "@example.com",            # local part > 64
    "é" * 33 + "@example.com",            # local part > 64 octets
    "a@" + "b" * 64 + ".com",             # domain label > 63
    "alice@example.com.",                 # trailing dot
    ".alice@example.com",                 # leading dot in local part
    "alice.@example.com",                 # trailing dot in local part
    "al..ice@example.com",                # double dot in local part
    "alice@exa..mple.com",                # double dot in domain
    "alice smith@example.com",            # space
    "alice@exa mple.com",
    "alice@-example.com",
    "a@[127.0.0.1]",                      # domain literal
    "a@[IPv6:::1]",
    "a@localhost",                        # single label
    "a@com",
    "a@example.local",                    # special-use names
    "a@example.invalid",
    "a@x.onion",
    "alice@ok.test",                      # .test without allow_test_tld
    "a@b.com, c@d.com",                   # two addresses
    "a@b.com; c@d.com",
    "a@b.com c@d.com",
    "Name <a@b.com>, Other <c@d.com>",
    "Name <a@b.com> <c@d.com>",
    "Name <a@b.com> trailing",
    "Smith, John <a@b.com>",
    "a@b.com (comment)",
    "<a@b.com",
    "a@b.com>",
    "<>",
    "Name <>",
    '"unclosed <a@b.com>',
    '"a" "b" <a@b.com>',
    "Bad@Name <a@b.com>",
    "a\u200b@example.com",                # zero-width space
    "alice@example.com\u2028",
    "alice＠example.com",                  # full-width at-sign
])
def test_invalid(raw: str) -> None:
    bad(raw)


def test_total_length_over_254() -> None:
    domain = ".".join(["b" * 61, "c" * 61, "d" * 61]) + ".com"
    addr = "a" * 64 + "@x" + domain  # 255 octets
    assert len(addr) == 255
    assert "too long" in bad(addr).message


@pytest.mark.parametrize("raw", [
    "a@b.com\r\nDATA",
    "a@b.com>\r\nRCPT TO:<c@d.com>",
    "a@b.com\nRCPT TO:<c@d.com>",
    "a@b.com\rQUIT",
    "a@b.com\x00",
    "a\x00b@example.com",
    "a@b.com\t",                          # trailing TAB is a control char, not trimmed
    "\ta@b.com",
    "a\x1b@example.com",
    "a@example.com\x7f",
    "a@example.com\x85",                  # NEL
    "Name\r\n <a@b.com>",
])
def test_control_characters_rejected(raw: str) -> None:
    problem = bad(raw)
    assert "control character" in problem.message


def test_test_tld_allowed_only_when_asked() -> None:
    p = ok("alice@ok.test", allow_test_tld=True)
    assert p.domain == "ok.test"
    assert p.dedupe_key == "alice@ok.test"
    assert ok("Bob <bob@mx.sub.test>", allow_test_tld=True).display_name == "Bob"
    problem = bad("alice@ok.test")
    assert "special-use or reserved" in problem.message
    # the flag does not open up other special-use names or single labels
    bad("a@x.local", allow_test_tld=True)
    bad("a@localhost", allow_test_tld=True)
    bad("a@test", allow_test_tld=True)


def test_messages_are_short_sentences() -> None:
    assert bad("alice smith@example.com").message == (
        "The email address contains invalid characters before the @-sign: SPACE."
    )
    assert bad("a@b.com, c@d.com").message == "The input contains more than one email address."
    assert bad("alice.example.com").message == "An email address must have an @-sign."
    assert "too long before the @-sign" in bad("a" * 65 + "@example.com").message
    assert bad("a@[127.0.0.1]").message == (
        "A bracketed IP address after the @-sign is not allowed here."
    )


def test_oversize_input_rejected_cheaply() -> None:
    huge = "a" * (MAX_INPUT_LENGTH + 1)
    assert "too long" in bad(huge).message
    assert "too long" in bad("a@b.com" + " " * MAX_INPUT_LENGTH).message
    assert "too long" in bad("\r\n" * 1_000_000).message  # length checked first


# --- never raises -------------------------------------------------------------------------

_ALPHABET = (
    string.printable + "\"<>@.,;:()[]\\ \u00a0\u00e9\u00df\u0130\u0338\u200b\u2028\u202e"
    "\ufeff\uff20\ufe6b\u7528\u6237\u4f8b\u5b50\U0001f600\ud800\udfff\x00\x7f\x85"
)


def _random_input(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.4:
        return "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(0, 40)))
    if kind < 0.7:
        base = rnd.choice(["alice@example.com", '"j d"@ex.com', "N <a@b.com>", "用户@例子.广告"])
        chars = list(base)
        for _ in range(rnd.randint(1, 4)):
            chars.insert(rnd.randint(0, len(chars)), rnd.choice(_ALPHABET))
        return "".join(chars)
    if kind < 0.9:
        return "".join(chr(rnd.randint(0, 0x10FFFF)) for _ in range(rnd.randint(0, 30)))
    return "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(900, 1100)))


def test_fuzz_never_raises() -> None:
    rnd = random.Random(20240501)
    accepted = 0
    for _ in range(4000):
        raw = _random_input(rnd)
        for allow in (False, True):
            result = parse_address(raw, allow_test_tld=allow)
            assert isinstance(result, (ParsedAddress, AddressProblem))
            assert result.original == raw
            if isinstance(result, ParsedAddress):
                accepted += 1
                # invariants of every accepted address
                assert result.normalized == f"{result.local}@{result.domain}"
                assert result.domain == result.domain.lower()
                assert result.ascii_domain.isascii()
                assert len(result.local.encode("utf-8")) <= 64
                assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in result.ascii_address)
                assert result.smtputf8 == (not result.local.isascii())
    assert accepted > 0  # the generator also produces valid addresses


def test_fuzz_accepted_addresses_are_stable() -> None:
    """Parsing a normalized address again gives the same address and dedupe key."""
    rnd = random.Random(7)
    atext = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
    for _ in range(500):
        local = "".join(rnd.choice(atext) for _ in range(rnd.randint(1, 20)))
        domain = rnd.choice(["example.com", "Example.ORG", "bücher.de", "xn--bcher-kva.de"])
        first = parse_address(f"{local}@{domain}")
        assert isinstance(first, ParsedAddress)
        again = ok(first.normalized)
        assert (again.normalized, again.dedupe_key) == (first.normalized, first.dedupe_key)
        assert ok(first.ascii_address).dedupe_key == first.dedupe_key


# --- the plain-address fast path gives the full path's answers ------------------------------


def _both_paths(raw: str, allow: bool) -> tuple[object, object]:
    """``_parse`` with and without the fast path: the result, or the rejection's text."""
    out = []
    for plain in (True, False):
        try:
            out.append(_parse(raw, allow, plain=plain))
        except Exception as exc:  # noqa: BLE001 - compared, not hidden
            out.append(f"{type(exc).__name__}: {exc}")
    return out[0], out[1]


_PLAIN_EDGES = [
    "alice@example.com", "Alice.B+tag_x-y@Sub.Example.COM", " bob@example.org ",
    "Postmaster@example.com", "ABUSE@example.com", "info@example.com",
    "a@xn--bcher-kva.de", "a@ab--cd.com", "a@b.c", "a@b.c0m", "a@1.com", "a@b.123",
    "a@example.local", "a@x.localhost", "a@x.onion", "a@in-addr.arpa", "a@ok.invalid",
    "a@ok.test", "a@test", "a@-b.com", "a@b-.com", "a@b..com", ".a@b.com", "a.@b.com",
    "a..b@c.com", "a@b.com.", "x" * 64 + "@example.com", "x" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com", "a@example." + "c" * 63,
    "a@example." + "c" * 64, "a@" + ".".join(["b" * 60] * 4) + ".com",
    "a@" + ".".join(["b" * 49] * 5) + ".io", "x" * 64 + "@" + ".".join(["b" * 40] * 4)
    + ".com", "a@b.com\n", "-@b.com", "+@b.com", "_@b.com", "a@b_c.com", "a@b.co_m",
]


@pytest.mark.parametrize("raw", _PLAIN_EDGES)
def test_the_fast_path_answers_as_the_full_path_on_edge_cases(raw: str) -> None:
    for allow in (False, True):
        fast, full = _both_paths(raw, allow)
        assert fast == full, (raw, allow)


def test_the_fast_path_answers_as_the_full_path_on_random_plain_looking_inputs() -> None:
    rnd = random.Random(14)
    atoms = string.ascii_letters + string.digits + "_+-"
    plain_taken = 0
    for _ in range(6000):
        local = ".".join("".join(rnd.choice(atoms) for _ in range(rnd.randint(1, 12)))
                         for _ in range(rnd.randint(1, 3)))
        labels = ["".join(rnd.choice(string.ascii_letters + string.digits + "-")
                          for _ in range(rnd.randint(1, 10))) for _ in range(rnd.randint(1, 3))]
        tld = rnd.choice(["com", "DE", "test", "local", "a", "x1", "онлайн", "xn--p1ai", "io"])
        raw = f"{local}@{'.'.join([*labels, tld])}"
        if rnd.random() < 0.1:  # a character outside the fast path's set, anywhere
            i = rnd.randint(0, len(raw))
            raw = raw[:i] + rnd.choice("!#$%&'*/=?^`{|}~ .@\"<>é") + raw[i:]
        for allow in (False, True):
            fast, full = _both_paths(raw, allow)
            assert fast == full, (raw, allow)
            plain_taken += _plain(raw, raw.strip(), allow) is not None
    assert plain_taken > 3000  # most of them took the fast path
