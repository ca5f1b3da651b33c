"""IRC-style chat logs read by their layout: the nickname in angle brackets that opens a line is
its speaker's handle.

A log line is "<nick> message", maybe after a timestamp ("[12:04] <quietmoth> which python") and
with a channel mode before the nick ("<@op>"). The brackets say the word is a handle, as a vCard's
X-SKYPE field does: a USERNAME whatever it looks like ("darkstar_99", or "Aiste", which is a first
name too), found wherever the log names that speaker again ("quietmoth: try the installer", "***
quietmoth has joined"). Only a conversation counts: two speakers at least, one of whom speaks
twice or on lines that carry a timestamp, in a text without markup's closing tags. One
"<filename> does not exist" after another is a manual's placeholder, and a bracketed word in a
list ("<src>  the source file", an indented "<code>   code fragments") or an HTML list item
("<li> Added ...") no speaker.
"""

from __future__ import annotations

import re
from collections import Counter

from piilab.addresses import Span

# A speaker line begins at the line's start (an indented "<code>   code fragments" is a list of
# tags), with one space before the message, which is no other bracketed word ("<Multi_key> <a>").
_SPEAKER = re.compile(
    r"(?m)^(?P<time>[\[(]?\d{1,2}:\d{2}(?::\d{2})?[\])]?[ \t]+)?<[@+%~&]?"
    r"(?P<nick>[A-Za-z\[\]\\`_^{|}][\w\[\]\\`^{|}-]{1,31})> (?=[^\s<])")
_CLOSING_TAG = re.compile(r"</[A-Za-z][\w-]*>")  # markup: "<li> Added ...</a>" is HTML, not a log
LEAST_NICK_CHARS = 3  # a shorter nick is found at its speaker lines only, not as a word elsewhere


def speakers(text: str) -> list[str]:
    """The nicknames that open a chat log's lines, where the text reads as a conversation (two
    speakers at least, and one of them speaks twice or the lines carry timestamps); none
    otherwise."""
    if _CLOSING_TAG.search(text):
        return []
    lines = list(_SPEAKER.finditer(text))
    said = Counter(m["nick"] for m in lines)
    if len(said) < 2 or (max(said.values()) < 2 and not any(m["time"] for m in lines)):
        return []
    return list(said)


def chat_handles(text: str) -> list[Span]:
    """Every place a chat log's speakers are named, their speaker lines' nicks and the same nick as
    a word elsewhere in the log, as USERNAME."""
    nicks = speakers(text)
    if not nicks:
        return []
    at_lines = {m.span("nick") for m in _SPEAKER.finditer(text)}
    words = [n for n in nicks if len(n) >= LEAST_NICK_CHARS]
    elsewhere = set()
    if words:
        alternatives = "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
        # a word of its own, not part of an e-mail address, a path or a URL ("quietmoth@host.org")
        pattern = re.compile(rf"(?<![\w@./:-])(?:{alternatives})(?![\w@-]|[./:]\w)")
        elsewhere = {m.span() for m in pattern.finditer(text)}
    return [(start, end, "USERNAME") for start, end in sorted(at_lines | elsewhere)]
