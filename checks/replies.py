"""Classify SMTP replies: what a server's answer says about a mailbox. Pure logic.

The classification is one table, :data:`RULES`, read top to bottom: the first rule that
matches a reply decides its class. Each rule quotes a real reply it was written for (the
tests check that every rule's example lands on that rule). The order, and why:

1. accepted (2xx);
2. too many recipients (x.5.3, or says so): the server refuses *more* recipients, which is
   nothing about this one (the prober asks it again in a new transaction);
3. the sender refused (x.1.7, x.1.8, "Sender address rejected", unless for policy): our
   probe's MAIL FROM is at fault, not the recipient. Before the mailbox rules, since
   "address rejected" would otherwise read as an unknown mailbox;
4. Microsoft 365's Directory-Based Edge Blocking (``5.4.1 Recipient address rejected:
   Access denied``): no such mailbox, although the words sound like a block;
5. enhanced mailbox codes (RFC 3463): 5.1.x unknown, 5.2.1 disabled, x.2.2 full;
6. 421 (the server is closing: temporary); system trouble (4.3.x, "insufficient system
   storage"): the server's problem, temporary, never ``mailbox_full``;
7. "mailbox full" texts;
8. blocks: block-list texts, and 5.7.x unless the text says the mailbox is unknown;
9. any other 4xx is temporary (greylisting and its kin);
10. 5xx texts without enhanced codes (qmail, Exchange, Postfix): disabled, then unknown;
    a bare 550, 551 or 553 to RCPT is, in practice, "no such mailbox";
11. any other 5xx: permanent, but not a fact about the mailbox.

>>> classify(parse_reply(550, "5.1.1 <bob@example.com>: Recipient address rejected"))
<ReplyClass.MAILBOX_NOT_FOUND: 'mailbox_not_found'>
>>> classify(parse_reply(554, "5.7.1 Client host blocked using zen.spamhaus.org"))
<ReplyClass.BLOCKED: 'blocked'>
>>> classify(parse_reply(451, "4.7.1 Greylisted, try again later"))
<ReplyClass.TEMPORARY: 'temporary'>
>>> rule_for(parse_reply(550, "5.4.1 Recipient address rejected: Access denied")).name
'microsoft_edge_block'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from checks.model import ReplyClass, SmtpReply

__all__ = ["parse_reply", "classify", "rule_for", "Rule", "RULES"]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
#: qmail and some others put the enhanced code last: "… by that name (#5.1.1)". Only
#: addressing codes (x.1.y) are taken: qmail's "(#5.7.1)" follows texts that mean "no
#: such mailbox here" too (validrcptto, rcpthosts), which the text rules judge better
_TRAILING_ENHANCED = re.compile(r"\(#([245])\.(1)\.(\d{1,3})\)\s*$")


def _words(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_BLOCKED_TEXT = _words(
    r"spamhaus|spamcop|barracuda|sorbs|\bsurbl\b|\brbl\b|dnsbl|blacklist|black list|"
    r"blocklist|block list|\bblocked\b|reputation|\blisted\b|banned|"
    r"not allowed to send|access denied|rejected due to policy|policy reason|"
    r"client host rejected|poor sender|too many complaints|abuse")
_NOT_FOUND_TEXT = _words(
    r"user unknown|unknown user|no such user|no such (?:mailbox|recipient|address)|"
    r"does not exist|doesn't exist|not exist|recipient not found|user not found|"
    r"address not found|mailbox not found|unknown recipient|recipient unknown|"
    r"invalid recipient|invalid mailbox|no mailbox|mailbox unavailable|"
    r"recipient address rejected|address rejected|unrouteable|not a valid mailbox|"
    r"account (?:does not|doesn't) exist|user doesn't have|no longer available")
_DISABLED_TEXT = _words(
    r"disabled|deactivated|inactive|suspended|account (?:has been )?(?:closed|locked)|"
    r"no longer active|expired")
_FULL_TEXT = _words(
    r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:storage|quota)|"
    r"mailbox size limit|out of storage|user'?s? (?:mailbox|disk) (?:is )?full")
_SYSTEM_TEXT = _words(r"insufficient system (?:storage|resources)|system storage")
_TOO_MANY_TEXT = _words(r"too many recipients|too many rcpt")
_SENDER_TEXT = _words(
    r"sender address rejected|sender (?:address )?(?:rejected|refused|denied)|"
    r"sender verify failed|"
    r"sender domain (?:must (?:exist|resolve)|not found|does not exist|unknown)|"
    r"unverified sender|verification of sender failed|invalid sender domain")


@dataclass(frozen=True)
class Rule:
    """One row of :data:`RULES`. A reply matches when it meets every condition given:
    ``codes`` (a range, low to high inclusive), ``only`` (exact codes), ``enhanced``
    (the RFC 3463 code, matched whole), ``bare`` (no enhanced code at all), ``text``
    (searched in the reply text) and not ``unless``."""

    name: str
    result: ReplyClass
    example: tuple[int, str]  # a real reply this rule is for
    codes: tuple[int, int] = (200, 599)
    only: frozenset[int] | None = None  # of ``codes``, just these
    enhanced: re.Pattern[str] | None = None
    bare: bool = False
    text: re.Pattern[str] | None = None
    unless: re.Pattern[str] | None = None

    def matches(self, reply: SmtpReply) -> bool:
        lo, hi = self.codes
        if not lo <= reply.code <= hi or (self.only and reply.code not in self.only):
            return False
        if self.bare and reply.enhanced:
            return False
        if self.enhanced is not None and not (
                reply.enhanced and self.enhanced.fullmatch(reply.enhanced)):
            return False
        if self.text is not None and not self.text.search(reply.message):
            return False
        return not (self.unless is not None and self.unless.search(reply.message))


def _enh(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


C = ReplyClass
_5XX, _4XX = (500, 599), (400, 499)

#: The classification, first match wins (the module docstring says why in this order).
RULES: tuple[Rule, ...] = (
    Rule("accepted", C.ACCEPTED, (250, "2.1.5 Ok"), codes=(200, 299)),
    Rule("too_many_recipients", C.TOO_MANY_RECIPIENTS,
         (452, "4.5.3 Error: too many recipients"), enhanced=_enh(r"[45]\.5\.3")),
    Rule("too_many_recipients_text", C.TOO_MANY_RECIPIENTS,
         (452, "Too many recipients in this session"), text=_TOO_MANY_TEXT),
    Rule("sender_rejected", C.SENDER_REJECTED,
         (553, "5.1.8 <verify@mailsift.invalid>: Sender address rejected: Domain not found"),
         enhanced=_enh(r"[45]\.1\.[78]")),
    Rule("sender_rejected_text", C.SENDER_REJECTED,
         (550, "Sender verify failed"), text=_SENDER_TEXT,
         unless=_words(r"policy|access denied|blocked|spam|reputation")),
    Rule("microsoft_edge_block", C.MAILBOX_NOT_FOUND,
         (550, "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
               "[DM6NAM12FT034.eop-nam12.prod.protection.outlook.com]"),
         codes=_5XX, enhanced=_enh(r"5\.4\.1"), text=_words(r"recipient address rejected")),
    Rule("unknown_mailbox", C.MAILBOX_NOT_FOUND,
         (550, "5.1.1 The email account that you tried to reach does not exist. Please try "
               "double-checking the recipient's email address for typos or unnecessary "
               "spaces. https://support.google.com/mail/?p=NoSuchUser"),
         codes=_5XX, enhanced=_enh(r"5\.1\.(?:0|1|6|10)")),
    Rule("disabled_mailbox", C.MAILBOX_DISABLED,
         (550, "5.2.1 The email account that you tried to reach is disabled."),
         codes=_5XX, enhanced=_enh(r"5\.2\.1")),
    Rule("full_mailbox", C.MAILBOX_FULL,
         (452, "4.2.2 The email account that you tried to reach is over quota."),
         enhanced=_enh(r"[45]\.2\.2")),
    Rule("closing", C.TEMPORARY,
         (421, "4.7.0 Too many connections, try again later"), codes=(421, 421)),
    Rule("system_trouble", C.SERVER_ERROR,
         (452, "4.3.1 Insufficient system storage"), codes=_4XX,
         enhanced=_enh(r"4\.3\.\d{1,3}")),
    Rule("system_trouble_text", C.SERVER_ERROR,
         (452, "Requested action not taken: insufficient system storage"), codes=_4XX,
         text=_SYSTEM_TEXT),
    Rule("full_mailbox_text", C.MAILBOX_FULL,
         (552, "Requested mail action aborted: exceeded storage allocation"),
         text=_FULL_TEXT),
    Rule("blocked_text", C.BLOCKED,
         (554, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
               "zen.spamhaus.org"), text=_BLOCKED_TEXT),
    Rule("policy", C.BLOCKED, (550, "5.7.1 Relaying denied"), codes=_5XX,
         enhanced=_enh(r"5\.7\.\d{1,3}"), unless=_NOT_FOUND_TEXT),
    Rule("temporary", C.TEMPORARY, (451, "4.7.1 Greylisted, try again later"), codes=_4XX),
    Rule("disabled_text", C.MAILBOX_DISABLED, (550, "Account has been suspended"),
         codes=_5XX, text=_DISABLED_TEXT),
    Rule("unknown_mailbox_text", C.MAILBOX_NOT_FOUND,
         (550, "Requested action not taken: mailbox unavailable"), codes=_5XX,
         text=_NOT_FOUND_TEXT),
    Rule("bare_550", C.MAILBOX_NOT_FOUND,
         (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"),
         codes=(550, 553), only=frozenset({550, 551, 553}), bare=True),
    Rule("permanent", C.PERMANENT, (554, "5.5.1 Error: transaction failed"), codes=_5XX),
)
#: a reply no rule matches (1xx, 3xx, nonsense codes)
_FALLBACK = Rule("other", C.PERMANENT, (354, "End data with <CR><LF>.<CR><LF>"),
                 codes=(0, 999))


def rule_for(reply: SmtpReply) -> Rule:
    """The first rule of :data:`RULES` that ``reply`` matches."""
    for rule in RULES:
        if rule.matches(reply):
            return rule
    return _FALLBACK


def classify(reply: SmtpReply) -> ReplyClass:
    """What ``reply`` (to RCPT TO, or an earlier command) says about the mailbox."""
    return rule_for(reply).result


def parse_reply(code: int, text: str) -> SmtpReply:
    """Split the enhanced status code off the reply text. Lines of a multi-line reply are
    folded into one text, each without the enhanced code it repeats; qmail's trailing
    ``(#5.1.1)`` counts as the enhanced code when none leads.

    >>> parse_reply(550, "5.1.1 User unknown")
    SmtpReply(code=550, message='User unknown', enhanced='5.1.1')
    >>> parse_reply(250, "OK")
    SmtpReply(code=250, message='OK', enhanced=None)
    >>> parse_reply(550, "5.1.1 The account does not exist. Please\\n5.1.1 check it.")
    SmtpReply(code=550, message='The account does not exist. Please check it.', enhanced='5.1.1')
    >>> parse_reply(511, "sorry, no mailbox here by that name (#5.1.1)").enhanced
    '5.1.1'
    """
    lines = text.split("\n")
    m = _ENHANCED.match(lines[0])
    if m and m.group(1) == str(code)[0]:
        enhanced = ".".join(m.groups())
        rest = [lines[0][m.end():]] + [
            ln.strip()[len(enhanced):] if (ln.strip() + " ").startswith(enhanced + " ")
            else ln for ln in lines[1:]]
        return SmtpReply(code, " ".join(" ".join(rest).split()), enhanced)
    folded = " ".join(text.split())  # fold multi-line replies and runs of spaces
    t = _TRAILING_ENHANCED.search(folded)
    if t and t.group(1) == str(code)[0]:
        return SmtpReply(code, folded, ".".join(t.groups()))
    return SmtpReply(code, folded, None)
