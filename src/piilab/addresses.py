"""E-mail addresses in text, and whose they are: plain and obfuscated addresses, fediverse
handles, the display names of personal mailboxes, and the addresses that name no person where
they stand (a role mailbox, a mailing list's, a message or event id's). The validators
(`piilab.shapes`) find and judge addresses with these.

Spans are (start, end, label) tuples over one text, end exclusive.
"""

from __future__ import annotations

import re
from functools import lru_cache

from piilab.data.validators import (DOT_WORDS, LETTER_WORDS, LIST_OWN_ADDRESS, NAME_PARTICLES,
                                   OBFUSCATED_EMAIL, is_email, is_name, is_post_nominal, is_role_mailbox,
                                   unobfuscated_email)
from piilab.span_sets import taken_by

Span = tuple[int, int, str]

_EMAIL_IN_TEXT = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
_HANDLE_IN_TEXT = re.compile(r"(?<![\w@])@([A-Za-z0-9_.]+)@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}(?![\w-])")


@lru_cache(maxsize=16)  # `on_items` runs the modes once per item on the same text
def emails(text: str) -> tuple[Span, ...]:
    """The text's e-mail addresses, plain or obfuscated (`obfuscated_emails`); not the
    "user@host" of a fediverse handle ("@user@host")."""
    plain = [(m.start(), m.end(), "EMAIL") for m in _EMAIL_IN_TEXT.finditer(text)
             if is_email(m.group()) and not (m.start() and text[m.start() - 1] == "@")]
    on_plain = taken_by(plain)
    hidden = [s for s in obfuscated_emails(text) if not on_plain(s[0], s[1])]  # "jo@x.org at y dot com"
    return tuple(sorted(plain + hidden))


_ARTICLES = frozenset("the a an this that my your our his her their its".split())  # "at the dot com"
# What may come right before a bare "x at y dot z" that is an address: a line's start, a
# bracket or punctuation, or a word that hands over to one ("mail", "contact", "from", "is").
_ADDRESS_CUE = re.compile(r"(?:^|[\n(<\[:;,]|\b(?:mail|e-?mail|contact|write|reach|at|from|by|via|is|me))"
                          r"[ \t]*$", re.IGNORECASE)
# A mail header's line, quoted or indented too, up to where its first address may begin.
_HEADER_START = re.compile(r"[> \t]*(?:from|reply-to|to|cc|sender)[ \t]*:[ \t]*[<(]?", re.IGNORECASE)


def _handed_over(text: str, start: int) -> bool:
    """Whether what comes right before `start` (on its line) hands over to an address."""
    return _ADDRESS_CUE.search(text, max(0, start - 12), start) is not None


def _first_on_header_line(text: str, start: int) -> bool:
    """Whether `start` is where a mail header line's first address begins ("From: jdoe at ...")."""
    line_start = _line_start(text, start)
    header = None if line_start is None else _HEADER_START.match(text, line_start)
    return header is not None and header.end() == start


def obfuscated_emails(text: str) -> list[Span]:
    """Addresses written with "at" and "dot" for "@" and ".": "wk [at] gnupg.org", "imcusg at
    gmail dot com", "<nmav at gnutls.org>". A bare " at " reads as one with "dot" words after it
    (in lower case, and after a line's start, punctuation or a word such as "mail", "contact",
    "from": "I work at acme dot com" and "Sarah at Amazon dot com" are prose), or with real dots
    inside a mailbox's angle brackets or first on a mail header's line ("From: jdoe at
    example.org (John Doe)", as list archives write it): "hosted at github.com" is prose."""
    found = []
    for m in OBFUSCATED_EMAIL.finditer(text):
        plain = unobfuscated_email(m.group())
        if not plain:
            continue
        bare_at = not any(c in m["at"] for c in "[({<")
        if bare_at and re.search(DOT_WORDS, m["domain"], re.IGNORECASE):
            said = (plain == plain.lower() and _handed_over(text, m.start())
                    and re.match(r"\w+", m["domain"])[0].lower() not in _ARTICLES)
        elif bare_at:
            in_brackets = m.start() > 0 and text[m.start() - 1] == "<" and text[m.end():m.end() + 1] == ">"
            said = in_brackets or _first_on_header_line(text, m.start())
        else:
            said = True
        if said:
            found.append((m.start(), m.end(), "EMAIL"))
    return found


def fediverse_users(text: str) -> list[Span]:
    """The users of the text's fediverse handles ("danikim" of "@danikim@hachyderm.io"), as
    USERNAME (the "@" outside, as the dev set's conventions have it)."""
    return [(m.start(1), m.end(1), "USERNAME") for m in _HANDLE_IN_TEXT.finditer(text)]


def handle_as_username(text: str, span: Span) -> Span:
    """An EMAIL span that is the "user@host" of a fediverse handle ("@danikim@hachyderm.io") as
    the USERNAME it names ("danikim"); any other span as it is."""
    start, end, label = span
    if label == "EMAIL" and start > 0 and text[start - 1] == "@" and "@" in text[start:end]:
        return start, start + text[start:end].index("@"), "USERNAME"
    return span


# Words that make a display name a collective's or a service's ("Debian Python Team", "GitHub
# Action", "Linux Kernel Mailing List"), and words that lead into a name on its line and are no
# part of it ("Copyright Jens Axboe <...>", "... 10:15 AM Jane Doe <...> wrote:").
_NOT_A_PERSON = frozenset("""
    the team project projects developers development contributors maintainers authors group
    foundation authority community organization organisation association society committee
    council consortium services service systems system software technologies labs bot robot
    list lists mailing support helpdesk customer accounts payable action actions ci daemon
    subsystem janitor masters officer review calendar docs receipts notifications alerts
    newsletter digest admin administrator your our my address""".split())
_LEAD_INS = frozenset("""
    copyright from to cc bcc reply author authors maintainer contact email e-mail mail by written
    reported am pm nachricht antwort auteur message inviato envoyé enviado""".split())
NAME_TOKEN = re.compile(r"[^\W\d_][\w'’.-]*")
_QUOTED_AT_END = re.compile(r'"([^"\n]{1,80})"[ \t]*,?[ \t]*$')


def _leads_in(word: str) -> bool:
    """Whether a word at the start of a display name's run is no part of the name: a particle
    ("de", before a name here), a lead-in ("From", "AM") or a title or greeting ("Dr.", "Hi")."""
    return not word[0].isupper() or word.strip(".,").lower() in _LEAD_INS | LETTER_WORDS


def without_post_nominals(words: str) -> str:
    """`words` up to the degrees and honours they end with ("John Doe, PhD" -> "John Doe, "),
    which stay outside a name as titles do."""
    cut = len(words)
    for word in reversed(list(re.finditer(r"[^\s\"]+", words))):
        if not is_post_nominal(word.group().rstrip(",")):
            break
        cut = word.start()
    return words[:cut]


def _display_name(before: str) -> tuple[int, int] | None:
    """Where the display name lies in `before` (a line up to a mailbox's "<" or "("): the run of
    capitalised words (particles inside it) right before the bracket, or inside the quotes that
    end it ('"Doe, Jane" <...>': a comma there is part of one name), less lead-in words and
    titles; None where there is none, or it reads as a collective, a brand or a service."""
    quoted = _QUOTED_AT_END.search(before)
    offset, region = (quoted.start(1), quoted.group(1)) if quoted else (0, before)
    region = without_post_nominals(region).rstrip(" \t,")  # "John Doe, PhD <...>"
    last_first = quoted is not None and region.count(",") == 1  # "Doe, Jane"; more: a list of people
    tokens = list(re.finditer(r"[^\s\"]+", region.rstrip(" \t',")))
    first = len(tokens)  # the run is tokens[first:], at most five words
    while first > max(0, len(tokens) - 5):
        word = tokens[first - 1].group().rstrip(",") if last_first else tokens[first - 1].group()
        if not (NAME_TOKEN.fullmatch(word) and (word[0].isupper() or word in NAME_PARTICLES)):
            break
        first -= 1
    while first < len(tokens) and _leads_in(tokens[first].group()):
        first += 1
    run = tokens[first:]
    words = {token.group().strip(",").lower() for token in run}
    after_via = first > 0 and tokens[first - 1].group().lower() == "via"  # "Jane Doe via Google Docs"
    if not run or words & _NOT_A_PERSON or after_via:
        return None
    if len(run) == 1 and not run[0].group().istitle():
        return None  # one word: a first name ("Matt"), not a brand ("GitHub", "PyPA", "DrivenData")
    return offset + run[0].start(), offset + run[-1].end()


DISPLAY_NAME_CHARS = 160  # how far before a mailbox's bracket its display name may begin


def _line_start(text: str, at: int) -> int | None:
    """The start of the line holding `at`, if it lies within DISPLAY_NAME_CHARS before it (so
    each address costs the same however long its line is); None on a longer line."""
    reach = max(0, at - DISPLAY_NAME_CHARS)
    newline = text.rfind("\n", reach, at)
    return newline + 1 if newline >= 0 or reach == 0 else None


def _name_reach(text: str, at: int) -> int:
    """Where a display name ending at `at` may begin: its line's start, or on a longer line the
    first word within DISPLAY_NAME_CHARS."""
    line_start = _line_start(text, at)
    if line_start is not None:
        return line_start
    space = text.find(" ", at - DISPLAY_NAME_CHARS, at)
    return at if space < 0 else space + 1


def mailbox_names(text: str) -> list[Span]:
    """The display names of the text's personal mailboxes, "Name <address>" or "Name (address)",
    as NAME (RFC 5322's name-addr, on one line), and the names that make up the first column of a
    table row whose second is the address ("Paul Eggert         eggert@cs.ucla.edu", as THANKS
    and AUTHORS files list people: `_column_name`)."""
    found, nobody = [], no_ones_addresses(text)
    for start, end, _ in emails(text):
        if start == 0 or nobody(start, end):
            continue
        if text[start - 1] in "<(":
            line_start = _name_reach(text, start - 1)
            place = _display_name(text[line_start:start - 1])
        else:  # the column's place is the text's own
            line_start, place = 0, _column_name(text, start, end)
        if place and is_name(text[line_start + place[0]:line_start + place[1]]):
            found.append((line_start + place[0], line_start + place[1], "NAME"))
    return found


_TABLE_ROW = re.compile(r"[ \t]*(?P<name>\S(?:[^\t\n]*?\S)?)(?:\t|  )[ \t]*$")


def _column_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Where in `text` the name lies when the line of the address at `start`..`end` is a table
    row of the two: the name, a gap of a tab or two spaces or more, the address, nothing after
    it. The name is the whole first cell or nothing (a lead-in such as "Maintainer:" makes the
    line a sentence's, not a table's)."""
    line_start = _line_start(text, start)
    line_end = text.find("\n", end)
    row = None if line_start is None else _TABLE_ROW.fullmatch(text, line_start, start)
    if row is None or text[end:len(text) if line_end < 0 else line_end].strip():
        return None
    return row.span("name") if is_whole_name(row["name"]) else None


def is_whole_name(words: str) -> bool:
    """Whether all of `words` reads as a person's display name: capitalised name words, no
    lead-in, title or collective's word (`_display_name` takes every one of them), a name's
    characters (`is_name`)."""
    return _display_name(words) == (0, len(words)) and is_name(words)


# Header lines whose addresses name a message or an event, not a person: "Message-ID:
# <2013...@acmenet.de>", "References: <a@b> <c@d>" (ids in angle brackets only; a CV's
# "References: Jane Doe, jane@uni.edu" names people), an iCalendar "UID:...@google.com".
_ID_LINE = re.compile(
    r"^[ \t]*(?:(?:message-id|resent-message-id|in-reply-to|references|content-id)[ \t]*:"
    r"(?:\s*<[^<>\s]+>[ \t,]*)+(?:\([^()\n]*\))?[ \t]*$|x-[\w-]*-id[ \t]*:\s*<[^<>\s]+>[ \t]*$|"
    r"uid[ \t]*[:;].*$)", re.IGNORECASE | re.MULTILINE)


# The last word of a display name that makes its mailbox a collective's: "the APT team <...>",
# "The Hiring Engine Automation <...>", "CRM Comments [...]".
_COLLECTIVE_LAST_WORDS = (_NOT_A_PERSON - {"the", "your", "our", "my", "address"}) | {"automation", "comments"}


def collectives_mailbox(text: str, start: int) -> bool:
    """Whether the address at `start` is in brackets after a display name whose last word names
    a collective ("Debian Python Team <team@...>"): a team's mailbox, no one's."""
    if start == 0 or text[start - 1] not in "<([":
        return False
    words = re.findall(r"[^\W\d_]+", text[text.rfind("\n", 0, start - 1) + 1:start - 1].lower())
    return bool(words) and words[-1] in _COLLECTIVE_LAST_WORDS


@lru_cache(maxsize=16)  # `on_items` asks once per item about the same text
def no_ones_addresses(text: str):
    """(start, end) -> whether the address there names no person where it stands: a role
    mailbox or a mailing list's, one on a message or event id's line, a collective's
    (`collectives_mailbox`), or the address of a list whose own addresses the text holds
    ("ppp@zzz.org" beside "ppp-request@zzz.org")."""
    on_id_line = taken_by(m.span() for m in _ID_LINE.finditer(text))
    lists = {f"{m['owned'] or m['list']}@{m['host']}".lower() for m in LIST_OWN_ADDRESS.finditer(text)}

    def nobody(start: int, end: int) -> bool:
        value = text[start:end]
        return (is_role_mailbox(value) or on_id_line(start, end) or collectives_mailbox(text, start)
                or (unobfuscated_email(value) or value).lower() in lists)
    return nobody
