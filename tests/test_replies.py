"""Reply classification: every reply class from code, enhanced code and text."""

from __future__ import annotations

import pytest

from checks.model import ReplyClass
from checks.replies import RULES, Rule, classify, parse_reply, rule_for

C = ReplyClass


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (250, "2.1.5 OK", C.ACCEPTED),
        (251, "User not local; will forward", C.ACCEPTED),
        (550, "5.1.1 <bob@x.com>: Recipient address rejected: User unknown", C.MAILBOX_NOT_FOUND),
        (550, "Requested action not taken: mailbox unavailable", C.MAILBOX_NOT_FOUND),
        (550, "No such user here", C.MAILBOX_NOT_FOUND),
        (553, "sorry, that domain isn't in my list of allowed rcpthosts", C.MAILBOX_NOT_FOUND),
        (511, "5.1.10 RESOLVER.ADR.RecipientNotFound", C.MAILBOX_NOT_FOUND),
        (550, "5.2.1 The email account that you tried to reach is disabled", C.MAILBOX_DISABLED),
        (550, "Account has been suspended", C.MAILBOX_DISABLED),
        (552, "5.2.2 Mailbox full", C.MAILBOX_FULL),
        (452, "4.2.2 The email account that you tried to reach is over quota", C.MAILBOX_FULL),
        (552, "Requested mail action aborted: exceeded storage allocation", C.MAILBOX_FULL),
        (554, "5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org",
         C.BLOCKED),
        (550, "5.7.1 Message rejected due to poor reputation", C.BLOCKED),
        (550, "5.7.1 Relaying denied by policy", C.BLOCKED),
        (421, "4.7.0 Too many connections, try later", C.TEMPORARY),
        (451, "4.7.1 Greylisted, try again later", C.TEMPORARY),
        (450, "4.2.0 Mailbox temporarily unavailable", C.TEMPORARY),
        (452, "4.5.3 Too many recipients", C.TOO_MANY_RECIPIENTS),
        (452, "Too many recipients in this session", C.TOO_MANY_RECIPIENTS),
        (554, "5.5.1 Error: transaction failed", C.PERMANENT),
        (501, "5.5.4 Syntax error in parameters", C.PERMANENT),
        (530, "5.7.0 Must issue a STARTTLS command first", C.BLOCKED),
        # real servers' texts (issue #10), as they send them
        (550, "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
              "[DM6NAM12FT034.eop-nam12.prod.protection.outlook.com]", C.MAILBOX_NOT_FOUND),
        (550, "5.7.1 Recipient address rejected: Access denied", C.BLOCKED),
        (452, "4.5.3 Too many recipients", C.TOO_MANY_RECIPIENTS),
        (511, "sorry, no mailbox here by that name (#5.1.1)", C.MAILBOX_NOT_FOUND),
        (550, "Requested action not taken: mailbox unavailable", C.MAILBOX_NOT_FOUND),
        (550, "5.1.1 The email account that you tried to reach does not exist. Please try\n"
              "5.1.1 double-checking the recipient's email address for typos or\n"
              "5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser",
         C.MAILBOX_NOT_FOUND),
        (452, "4.3.1 Insufficient system storage", C.SERVER_ERROR),
        (452, "Requested action not taken: insufficient system storage", C.SERVER_ERROR),
        (451, "4.3.0 Local error in processing", C.SERVER_ERROR),
        (450, "4.1.8 <verify@mailsift.invalid>: Sender address rejected: Domain not found",
         C.SENDER_REJECTED),
        (550, "5.1.8 <verify@mailsift.invalid>: Sender address rejected: Domain not found",
         C.SENDER_REJECTED),
        (553, "5.1.8 <verify@mailsift.invalid>: Sender address rejected: Domain not found",
         C.SENDER_REJECTED),
        (550, "Verification failed for <verify@mailsift.invalid> Sender verify failed",
         C.SENDER_REJECTED),
        (550, "5.1.7 Invalid sender address", C.SENDER_REJECTED),
        (550, "5.1.0 <verify@mailsift.invalid> sender rejected", C.SENDER_REJECTED),
        (553, "sorry, this recipient is not in my validrcptto list (#5.7.1)",
         C.MAILBOX_NOT_FOUND),
        (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
         C.MAILBOX_NOT_FOUND),
        (421, "4.3.2 Service not available, closing transmission channel", C.TEMPORARY),
        (550, "5.7.1 sender rejected by policy", C.BLOCKED),
        (554, "5.7.1 <verify@ok.test>: Sender address rejected: Access denied", C.BLOCKED),
    ],
)
def test_classify(code: int, text: str, expected: ReplyClass) -> None:
    assert classify(parse_reply(code, text)) is expected


def test_parse_reply_splits_enhanced_code_only_when_class_matches() -> None:
    assert parse_reply(550, "5.1.1 User unknown").enhanced == "5.1.1"
    # an enhanced code whose class disagrees with the reply code is text, not a code
    r = parse_reply(250, "5.1.1 odd")
    assert r.enhanced is None and r.message == "5.1.1 odd"
    # multi-line replies are folded
    assert parse_reply(250, "first\nsecond").message == "first second"


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_every_rule_decides_the_reply_it_quotes(rule: Rule) -> None:
    """The table's order is right for every reply it was written for: no earlier rule
    takes a later rule's example."""
    code, text = rule.example
    assert rule_for(parse_reply(code, text)) is rule


def test_multi_line_replies_drop_the_repeated_enhanced_code() -> None:
    reply = parse_reply(550, "5.1.1 The email account that you tried to reach does not "
                             "exist. Please try\n5.1.1 double-checking the address.")
    assert reply.enhanced == "5.1.1"
    assert reply.message == ("The email account that you tried to reach does not exist. "
                             "Please try double-checking the address.")
    # a longer code on a later line is not the same code
    assert parse_reply(550, "5.1.1 first\n5.1.10 second").message == "first 5.1.10 second"
