"""Classify SMTP replies: what a server's answer says about a mailbox. Pure logic.

The enhanced status code (RFC 3463) is the strongest signal, then well-known phrases of
the reply text, then the basic reply code.

>>> classify(parse_reply(550, "5.1.1 <bob@example.com>: Recipient address rejected"))
<ReplyClass.MAILBOX_NOT_FOUND: 'mailbox_not_found'>
>>> classify(parse_reply(554, "5.7.1 Client host blocked using zen.spamhaus.org"))
<ReplyClass.BLOCKED: 'blocked'>
>>> classify(parse_reply(451, "4.7.1 Greylisted, try again later"))
<ReplyClass.TEMPORARY: 'temporary'>
"""

from __future__ import annotations

import re

from checks.model import ReplyClass, SmtpReply

__all__ = ["parse_reply", "classify"]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")

_BLOCKED_TEXT = re.compile(
    r"spamhaus|spamcop|barracuda|sorbs|\bsurbl\b|\brbl\b|dnsbl|blacklist|black list|"
    r"blocklist|block list|\bblocked\b|reputation|\blisted\b|banned|"
    r"not allowed to send|access denied|rejected due to policy|policy reason|"
    r"client host rejected|poor sender|too many complaints|abuse",
    re.IGNORECASE,
)
_NOT_FOUND_TEXT = re.compile(
    r"user unknown|unknown user|no such user|no such (?:mailbox|recipient|address)|"
    r"does not exist|doesn't exist|not exist|recipient not found|user not found|"
    r"address not found|mailbox not found|unknown recipient|recipient unknown|"
    r"invalid recipient|invalid mailbox|no mailbox|mailbox unavailable|"
    r"recipient address rejected|address rejected|unrouteable|not a valid mailbox|"
    r"account (?:does not|doesn't) exist|user doesn't have|no longer available",
    re.IGNORECASE,
)
_DISABLED_TEXT = re.compile(
    r"disabled|deactivated|inactive|suspended|account (?:has been )?(?:closed|locked)|"
    r"no longer active|expired",
    re.IGNORECASE,
)
_FULL_TEXT = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:storage|quota)|"
    r"insufficient (?:system )?storage|mailbox size limit|out of storage",
    re.IGNORECASE,
)
_TOO_MANY_TEXT = re.compile(r"too many recipients|too many rcpt", re.IGNORECASE)


def parse_reply(code: int, text: str) -> SmtpReply:
    """Split the enhanced status code off the reply text.

    >>> parse_reply(550, "5.1.1 User unknown")
    SmtpReply(code=550, message='User unknown', enhanced='5.1.1')
    >>> parse_reply(250, "OK")
    SmtpReply(code=250, message='OK', enhanced=None)
    """
    text = " ".join(text.split())  # fold multi-line replies and runs of spaces
    m = _ENHANCED.match(text)
    if m and m.group(1) == str(code)[0]:
        return SmtpReply(code, text[m.end():].strip(), ".".join(m.groups()))
    return SmtpReply(code, text, None)


def classify(reply: SmtpReply) -> ReplyClass:
    """What ``reply`` (to RCPT TO, or an earlier command) says about the mailbox."""
    code, text, enh = reply.code, reply.message, reply.enhanced or ""
    if 200 <= code < 300:
        return ReplyClass.ACCEPTED
    subject_detail = enh.split(".", 1)[1] if enh else ""

    # enhanced status codes first: they were made for exactly this
    if enh in {"4.5.3", "5.5.3"} or _TOO_MANY_TEXT.search(text):
        return ReplyClass.TOO_MANY_RECIPIENTS
    if code >= 500:
        if subject_detail in {"1.1", "1.0", "1.10", "1.6"}:
            return ReplyClass.MAILBOX_NOT_FOUND
        if subject_detail == "2.1":
            return ReplyClass.MAILBOX_DISABLED
        if subject_detail == "2.2":
            return ReplyClass.MAILBOX_FULL
    if subject_detail == "2.2" or _FULL_TEXT.search(text):
        return ReplyClass.MAILBOX_FULL
    if code == 421:
        return ReplyClass.TEMPORARY
    if _BLOCKED_TEXT.search(text) or (enh.startswith("5.7") and code >= 500
                                       and not _NOT_FOUND_TEXT.search(text)):
        return ReplyClass.BLOCKED
    if 400 <= code < 500:
        return ReplyClass.TEMPORARY
    if code >= 500:
        if _DISABLED_TEXT.search(text):
            return ReplyClass.MAILBOX_DISABLED
        if _NOT_FOUND_TEXT.search(text):
            return ReplyClass.MAILBOX_NOT_FOUND
        if code in {550, 551, 553} and not enh:
            # a bare 550 to RCPT TO is, in practice, "no such mailbox"
            return ReplyClass.MAILBOX_NOT_FOUND
        return ReplyClass.PERMANENT
    return ReplyClass.PERMANENT
