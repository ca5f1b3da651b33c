"""vCards read by their fields (RFC 6350, and the 2.1 and 3.0 forms before it).

A vCard is a list of properties between "BEGIN:VCARD" and "END:VCARD", each a line
"NAME;PARAMS:value" (with an optional "item1." group before the name). Some properties say by
definition what their value is, whatever a model makes of it:
- UID, PRODID, REV, VERSION, KIND, CLASS, CATEGORIES and Apple's X-ABLabel describe the card,
  not its person (a UID such as "issue251part1" is no username, "_$!<Anniversary>!$_" no name);
- the messaging fields X-ICQ, X-AIM, X-JABBER, X-SKYPE, X-MSN, X-YAHOO and the like hold the
  person's handle on that service, a USERNAME (an ICQ number too, which a model reads as a phone
  number);
- N holds the name in parts, "family;given;additional;prefixes;suffixes": the first three are
  names ("N:Doe;John;Richter\\, James;Mr.;Sr."), titles are not.
A property's name is syntax, never a value ("RRULE" of an iCalendar file, which shares the
syntax). Only a text with a "BEGIN:VCARD" line is read as a card (property names: "BEGIN:VCARD"
or "BEGIN:VCALENDAR").
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.data.validators import is_name

_CARD = re.compile(r"(?im)^BEGIN:VCARD[ \t]*$")
_CARD_OR_CALENDAR = re.compile(r"(?im)^BEGIN:(?:VCARD|VCALENDAR)[ \t]*$")
_GROUP_AND_PARAMS = r"(?:item\d+\.)?{}(?:;[^:\n]*)?:"
_ABOUT_THE_CARD = re.compile(
    "(?im)^" + _GROUP_AND_PARAMS.format(
        r"(?:UID|PRODID|REV|VERSION|KIND|CLASS|CATEGORIES|SORT-STRING|X-ABLABEL)")
    + r"(?P<value>[^\n]*)")
_MESSENGER = re.compile(
    "(?im)^" + _GROUP_AND_PARAMS.format(
        r"X-(?:ICQ|AIM|JABBER|SKYPE|SKYPE-USERNAME|MSN|YAHOO|GADUGADU|GOOGLE-TALK|QQ|TWITTER)")
    + r"[ \t]*(?P<value>[^\s;,]+)")
_STRUCTURED_NAME = re.compile("(?im)^" + _GROUP_AND_PARAMS.format("N") + r"(?P<value>[^\n]*)")
_PROPERTY_NAME = re.compile(r"(?im)^(?:item\d+\.)?[A-Z][A-Z0-9-]*(?=[;:])")
NAME_PARTS = 3  # family, given and additional names; then prefixes and suffixes


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


def structured_names(text: str) -> list[Span]:
    """The family, given and additional names of a vCard's N fields, each as a NAME ("Doe" and
    "John" of "N:Doe;John;;Mr.;"; an escaped comma stays inside its part); none where the text is
    not a card."""
    found = []
    for start, end in _values(text, _STRUCTURED_NAME):
        at = start
        for part in re.split(r"(?<!\\);", text[start:end])[:NAME_PARTS]:
            value = part.strip()
            if value and is_name(value.replace("\\,", ",")):
                first = at + part.index(value)
                found.append((first, first + len(value), "NAME"))
            at += len(part) + 1
    return found


def property_names(text: str) -> list[tuple[int, int]]:
    """Where a vCard's or an iCalendar file's property names are ("RRULE" of "RRULE:FREQ=..."):
    syntax, never a value; none where the text is neither."""
    if _CARD_OR_CALENDAR.search(text) is None:
        return []
    return [m.span() for m in _PROPERTY_NAME.finditer(text)]
