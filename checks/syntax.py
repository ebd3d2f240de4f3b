"""Address syntax: from one raw input string to a :class:`ParsedAddress` or an
:class:`AddressProblem`. Pure logic, no I/O (``email_validator`` is called with
``check_deliverability=False``, so it never touches DNS).

Accepted input forms (surrounding whitespace is trimmed):

* ``addr-spec`` — ``alice@example.com``, ``"john doe"@example.com``;
* ``<addr-spec>``;
* ``Display Name <addr-spec>`` — the display name is either one quoted string or plain
  words (letters, digits, spaces, periods and RFC 5322 atext; no ``,;:@<>()[]\\"``).

Anything else — two addresses, comments, text after ``>``, unbalanced brackets — is an
:class:`AddressProblem`. Control characters (C0 incl. CR/LF/NUL and TAB, DEL, C1, U+2028/U+2029)
anywhere in the input are refused before any parsing, so no accepted address can ever carry
an SMTP command injection, and inputs longer than :data:`MAX_INPUT_LENGTH` characters are
refused before parsing as well.

Normalization (see :func:`parse_address`):

* ``local`` is the local part as email-validator normalizes it: Unicode NFC, quotes kept
  only when needed (``"john"@x`` becomes ``john@x``, ``"john doe"@x`` keeps its quotes, with
  ``\\`` escapes as needed) and — email-validator's choice — the RFC 2142 mailbox names
  (``Postmaster``, ``Abuse``…) lower-cased. Otherwise the case of the local part is kept:
  it is what goes into ``RCPT TO``.
* ``domain`` is the Unicode (U-label) form, lower-cased; ``ascii_domain`` the IDNA 2008
  A-label form used for DNS and SMTP.
* ``dedupe_key`` is ``local.casefold() + "@" + ascii_domain``: mailbox local parts are
  compared case-insensitively (RFC 5321 lets servers be case-sensitive, but in practice
  almost none are), so ``Alice@Example.COM`` and ``alice@example.com`` are one mailbox.
  Sub-addresses (``+tag``) and provider-specific dots are *not* folded.

>>> parse_address("Alice <Alice@Example.COM>").normalized
'Alice@example.com'
>>> parse_address("a@b.com\\r\\nDATA").message
'The email address contains a control character (such as a line break), which is not allowed.'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from email.utils import getaddresses

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from checks.model import AddressProblem, ParsedAddress

__all__ = ["MAX_INPUT_LENGTH", "LOCAL_PART_MAX_OCTETS", "parse_address", "input_key"]

#: raw inputs longer than this (in characters) are refused before any parsing
MAX_INPUT_LENGTH = 1000
#: RFC 5321 §4.5.3.1.1, counted in UTF-8 octets (what SMTPUTF8 transmits)
LOCAL_PART_MAX_OCTETS = 64

# Characters that must never appear anywhere in an input: C0 controls (CR, LF, NUL, TAB…),
# DEL, C1 controls (incl. NEL U+0085) and the Unicode line/paragraph separators.
_FORBIDDEN = frozenset(
    [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]
)
# Not allowed in an unquoted display name (RFC 5322 specials other than "." plus backslash).
_DISPLAY_NAME_SPECIALS = frozenset('"<>,;:@()[]\\')

_MSG_CONTROL = (
    "The email address contains a control character (such as a line break), "
    "which is not allowed."
)

_MSG_MANY = "The input contains more than one email address."

# The common case, decided without email-validator (about 30 µs a call, most of intake's
# and the submitting client's cost per address): an ASCII dot-atom local part of letters,
# digits and ``_+-``, and a domain of LDH labels ending in an alphabetic TLD. Anything
# else, and any such address that email-validator treats specially (an RFC 2142 mailbox
# name, a Punycode or other ``--`` label, a special-use TLD, the length limits), takes
# the full path. ``tests/test_syntax.py`` holds the two paths to the same answers.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})")
_RFC2142_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_SPECIAL_USE_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


class _Reject(Exception):
    """Internal: carries an AddressProblem message out of the helpers."""


def parse_address(raw: str, *, allow_test_tld: bool = False) -> ParsedAddress | AddressProblem:
    """Parse and normalize one address; never raises for a ``str`` input.

    ``allow_test_tld`` accepts domains under the reserved ``.test`` TLD (the simulated mail
    world uses ``alice@ok.test``); other special-use names (``.local``, ``.invalid``,
    ``localhost``…) and IP-address literals are always refused.

    >>> p = parse_address("  Jörg Müller <Jorg+news@BÜCHER.de> ")
    >>> (p.local, p.domain, p.ascii_domain, p.display_name, p.smtputf8)
    ('Jorg+news', 'bücher.de', 'xn--bcher-kva.de', 'Jörg Müller', False)
    >>> p.normalized, p.dedupe_key, p.ascii_address
    ('Jorg+news@bücher.de', 'jorg+news@xn--bcher-kva.de', 'Jorg+news@xn--bcher-kva.de')
    >>> parse_address('"john doe"@example.com').local
    '"john doe"'
    >>> parse_address("用户@例子.广告").smtputf8
    True
    >>> parse_address("alice@ok.test", allow_test_tld=True).normalized
    'alice@ok.test'
    >>> parse_address("alice@ok.test").message
    'The part after the @-sign is a special-use or reserved name that cannot be used with email.'
    >>> parse_address("a@b.com, c@d.com").message
    'The input contains more than one email address.'
    >>> parse_address("a b@example.com").message
    'The email address contains invalid characters before the @-sign: SPACE.'
    >>> parse_address("a\ufffd@example.com").message[:50]
    'The email address contains invalid characters (U+F'
    """
    try:
        return _parse(raw, allow_test_tld)
    except _Reject as e:
        return AddressProblem(original=raw, message=str(e))
    except EmailNotValidError as e:
        return AddressProblem(original=raw, message=_sentence(str(e)))
    except Exception:  # noqa: BLE001 - the contract is "never raises"; last-resort guard
        return AddressProblem(original=raw, message="The email address is not valid.")


def input_key(parsed: ParsedAddress | AddressProblem) -> str:
    """The identity of an input within a job (dedupe, Kafka keys, the CLI's output rows).

    An address has its dedupe key. An input that is not one is ``raw:`` and the input as
    given, stripped; or, when that is longer than :data:`MAX_INPUT_LENGTH`, ``raw#`` and a
    digest of it (a key stays short). Intake, ``streams.client`` and ``mailsift validate``
    all use this, so every row finds its verdict.

    >>> input_key(parse_address("Ann@Example.COM")), input_key(parse_address(" no "))
    ('ann@example.com', 'raw:no')
    >>> input_key(parse_address("x" * 1500))[:5]
    'raw#s'
    """
    if isinstance(parsed, ParsedAddress):
        return parsed.dedupe_key
    text = parsed.original.strip()
    if len(text) > MAX_INPUT_LENGTH:
        return "raw#sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return "raw:" + text


def _plain(raw: str, text: str, allow_test_tld: bool) -> ParsedAddress | None:
    """``text`` parsed without email-validator when it is a plain address (see
    :data:`_PLAIN_ADDRESS`), else None: the same answer the full path gives, faster.

    >>> _plain("Ann@Example.COM", "Ann@Example.COM", False).dedupe_key
    'ann@example.com'
    >>> _plain("Postmaster@example.com", "Postmaster@example.com", False) is None
    True
    """
    match = _PLAIN_ADDRESS.fullmatch(text)
    if match is None or len(text) > 254:
        return None
    domain = match.group(1).lower()
    local = text[:match.start(1) - 1]
    tld = domain.rpartition(".")[2]
    if (len(local) > LOCAL_PART_MAX_OCTETS or "--" in domain
            or local.lower() in _RFC2142_NAMES
            or (tld in _SPECIAL_USE_TLDS and not (tld == "test" and allow_test_tld))):
        return None
    return ParsedAddress(original=raw, local=local, domain=domain, ascii_domain=domain,
                         normalized=f"{local}@{domain}", display_name=None, smtputf8=False,
                         dedupe_key=f"{local.lower()}@{domain}")


def _parse(raw: str, allow_test_tld: bool, plain: bool = True) -> ParsedAddress:
    if len(raw) > MAX_INPUT_LENGTH:
        raise _Reject(f"The input is too long (more than {MAX_INPUT_LENGTH} characters).")
    if not _FORBIDDEN.isdisjoint(raw):
        raise _Reject(_MSG_CONTROL)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise _Reject("The email address contains invalid characters (lone surrogates).")
    if "\ufffd" in raw:  # what a NUL, a lone surrogate or bytes not in UTF-8 became
        raise _Reject("The email address contains invalid characters (U+FFFD: a NUL, a "
                      "lone surrogate or bytes that are not UTF-8).")
    text = raw.strip()
    if not text:
        raise _Reject("The email address is empty.")
    if plain and (parsed := _plain(raw, text, allow_test_tld)) is not None:
        return parsed

    # An unquoted "," or ";" is an address-list separator and never part of one address.
    if _first_unquoted(text, ",") >= 0 or _first_unquoted(text, ";") >= 0:
        raise _Reject(_MSG_MANY)
    display_name, addr_spec = _split_display_name(text)
    if not addr_spec:
        raise _Reject("The email address is empty.")

    info = validate_email(
        addr_spec,
        check_deliverability=False,
        allow_smtputf8=True,
        allow_quoted_local=True,
        allow_domain_literal=False,
        allow_display_name=False,
        allow_empty_local=False,
        test_environment=allow_test_tld,
        globally_deliverable=True,
    )
    # Defence in depth against half-parsed input ("a@b.com c@d.com", "X <a@b> junk"): the
    # stdlib's (lenient) header parser must also see exactly one address in the input.
    if len(getaddresses([text])) != 1:
        raise _Reject(_MSG_MANY)
    local = info.local_part
    # email-validator 2.x only checks the local-part length in strict mode (and then in
    # characters); RFC 5321 limits it to 64 octets, which is what a server enforces.
    octets = len(local.encode("utf-8"))
    if octets > LOCAL_PART_MAX_OCTETS:
        extra = octets - LOCAL_PART_MAX_OCTETS
        raise _Reject(
            f"The email address is too long before the @-sign "
            f"({extra} byte{'s' if extra != 1 else ''} too many)."
        )
    domain = info.domain.lower()
    ascii_domain = info.ascii_domain.lower()
    if "." not in ascii_domain:
        # email-validator lets a bare "@test" through when test_environment=True.
        raise _Reject("The part after the @-sign is not valid. It should have a period.")
    return ParsedAddress(
        original=raw,
        local=local,
        domain=domain,
        ascii_domain=ascii_domain,
        normalized=f"{local}@{domain}",
        display_name=display_name,
        smtputf8=not local.isascii(),
        dedupe_key=f"{local.casefold()}@{ascii_domain}",
    )


def _split_display_name(text: str) -> tuple[str | None, str]:
    """Split ``Name <addr>`` / ``<addr>`` / ``addr`` into (display name or None, addr-spec).

    Only input that ends with ``>`` has a display-name form; then the first ``<`` outside
    a quoted string opens the address. Everything else is returned whole as the addr-spec
    (email-validator then refuses stray ``<``/``>``/spaces in it).
    """
    if not text.endswith(">"):
        return None, text
    open_at = _first_unquoted(text, "<")
    if open_at < 0:
        raise _Reject("The email address has a closing angle bracket without an opening one.")
    addr_spec = text[open_at + 1:-1]
    if _first_unquoted(addr_spec, "<") >= 0 or _first_unquoted(addr_spec, ">") >= 0:
        raise _Reject(_MSG_MANY)
    return _display_name(text[:open_at].strip()), addr_spec.strip()


def _first_unquoted(text: str, target: str) -> int:
    """Index of the first ``target`` outside double quotes (``\\`` escapes inside), or -1."""
    quoted = escaped = False
    for i, c in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == target:
            return i
    return -1


def _display_name(part: str) -> str | None:
    if not part:
        return None
    if part.startswith('"'):
        value: list[str] = []
        escaped = False
        for i, c in enumerate(part[1:], start=1):
            if escaped:
                value.append(c)
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                if i != len(part) - 1:
                    raise _Reject("The display name has text after its closing quote.")
                name = unicodedata.normalize("NFC", "".join(value)).strip()
                return name or None
            else:
                value.append(c)
        raise _Reject("The display name has an unclosed quote.")
    bad = sorted({c for c in part if c in _DISPLAY_NAME_SPECIALS})
    if bad:
        raise _Reject(
            "The display name contains characters that must be quoted: " + " ".join(bad) + "."
        )
    return " ".join(unicodedata.normalize("NFC", part).split())


def _sentence(message: str) -> str:
    message = " ".join(message.split()) or "The email address is not valid."
    return message if message.endswith((".", "!", "?")) else message + "."
