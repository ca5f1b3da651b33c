"""vCards read by their fields (RFC 6350, and the 2.1 and 3.0 forms before it).

A vCard is a list of properties between "BEGIN:VCARD" and "END:VCARD", each a line
"NAME;PARAMS:value" (with an optional "item1." group before the name). Some properties say by
definition what their value is, whatever a model makes of it: UID, PRODID, REV, VERSION, KIND,
CLASS and CATEGORIES describe the card, not its person (a UID such as "issue251part1" is no
username), and the messaging fields X-ICQ, X-AIM, X-JABBER, X-SKYPE, X-MSN, X-YAHOO and the like
hold the person's handle on that service, a USERNAME (an ICQ number too, which a model reads as
a phone number). Only a text with a "BEGIN:VCARD" line is read as a card.
"""

from __future__ import annotations

import re

from piilab.addresses import Span

_CARD = re.compile(r"(?im)^BEGIN:VCARD[ \t]*$")
_GROUP_AND_PARAMS = r"(?:item\d+\.)?{}(?:;[^:\n]*)?:"
_ABOUT_THE_CARD = re.compile(
    "(?im)^" + _GROUP_AND_PARAMS.format(r"(?:UID|PRODID|REV|VERSION|KIND|CLASS|CATEGORIES|SORT-STRING)")
    + r"(?P<value>[^\n]*)")
_MESSENGER = re.compile(
    "(?im)^" + _GROUP_AND_PARAMS.format(
        r"X-(?:ICQ|AIM|JABBER|SKYPE|SKYPE-USERNAME|MSN|YAHOO|GADUGADU|GOOGLE-TALK|QQ|TWITTER)")
    + r"[ \t]*(?P<value>[^\s;,]+)")


def _values(text: str, pattern: re.Pattern) -> list[tuple[int, int]]:
    if _CARD.search(text) is None:
        return []
    return [(m.start("value"), m.end("value")) for m in pattern.finditer(text) if m["value"]]


def card_only_values(text: str) -> list[tuple[int, int]]:
    """Where the values of a vCard's fields about the card itself are (its UID, PRODID, REV,
    ...): no one's data; none where the text is not a card."""
    return _values(text, _ABOUT_THE_CARD)


def messenger_handles(text: str) -> list[Span]:
    """A vCard's instant-messaging handles ("X-ICQ:123456789", "X-SKYPE:jo.doe"), as USERNAME;
    none where the text is not a card."""
    return [(start, end, "USERNAME") for start, end in _values(text, _MESSENGER)]
