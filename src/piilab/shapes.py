"""Values with a fixed shape, found or checked without the model: the validators' half of extract.

A model reads context (whose address, which number is personal) but can miscopy or cut a value;
a pattern has no context but never miscopies. Four ways to combine them, measured on the
real-text dev set (docs/evaluation.md, "Model and validators"):

- `extend`:   grow a model item that is cut inside an e-mail address (as EMAIL) or URL to the
              whole value, a phone number over the area or country code written right before it ("(02) "
              of "(02) 9374 4000") and a name over its initial ("M. " of "M. Conti");
- `check`:    drop a model item whose value cannot have its label's shape: an e-mail, phone or
              web address of the wrong shape, a role mailbox ("support@...") or a mailing list's
              address ("bug-coreutils@...", "...@lists.debian.org") as EMAIL, a
              freephone number (0800 ..., 1-800-...) as PHONE_NUM, a "name" with digits or code
              characters, ending in a company's legal form ("... GmbH"), holding an
              institution's noun ("... Office") or made only of words that greet, thank, title
              or head a letter ("Bonjour", "Madame", "Betreff"), a "username" with spaces or
              slashes or that is a channel, file name or constant, an "ID" with fewer than four
              digits or that is a file path, code, a CVE id, a UUID, a timestamp, a date or an
              issue reference, an "address" with no number or that reads as a sentence
              (piilab.data.validators; each keeps every value the generator writes and every
              value in the dev set); trim greetings and titles off a name ("Ciao Giulia"); and
              relabel a national number in its own shape (123-45-6789, 000.000.000-00) ID_NUM,
              whatever the model called it (PHONE_NUM, mostly), and a fediverse handle's
              "user@host" the user's USERNAME;
- `complete`: add e-mail addresses (not role mailboxes; obfuscated ones too, "wk [at]
              gnupg.org", "jo at example dot org", "<nmav at gnutls.org>"), the user of a fediverse handle
              ("@user@host", as USERNAME), Luhn-valid card numbers, IBANs and national numbers
              (US SSN, Brazilian CPF, Spanish DNI, French NIR, UK NINO, Swiss AHV) with valid
              check digits that the model missed, but none right after a word that names it
              a business's reference ("Order #", "Rechnung Nr."), and phone numbers right after
              a phone label ("Tel.:", "Mobile", a vCard's "TEL;TYPE=cell:"; not freephone); no
              URLs or other phone numbers: public links and numbers look the same as personal
              ones, and only context tells them apart;
- `mailbox`:  add the display name of a personal mailbox ("Jens Axboe <jens@axboe.dk>", as
              mail headers, changelogs, copyright lines and package metadata write them) as
              NAME where the model missed it; a team's or company's name is left alone.

Spans are (start, end, label) tuples over one text, end exclusive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from piilab.data.validators import (LETTER_WORDS, NAME_PARTICLES, OBFUSCATED_EMAIL, br_cpf_valid,
                                   ch_ahv_valid, es_dni_valid, fr_nir_valid, iban_valid, is_email,
                                   is_id_number, is_name, is_personal_email, is_personal_phone,
                                   is_role_mailbox, is_street_address, is_url, is_us_ssn,
                                   is_username, is_web_address, luhn_valid, only_letter_words,
                                   uk_nino_valid, unobfuscated_email)

Span = tuple[int, int, str]
MODES = ("extend", "check", "complete", "mailbox")  # the order they apply in
ADDING = frozenset({"complete", "mailbox"})  # the modes that add spans the model did not write
EXTRACT_MODES = MODES
"""`piilab extract`'s (and piilab.extractor's) validators, chosen on the real-text dev set
(docs/evaluation.md, "Model and validators")."""

_EMAIL_IN_TEXT = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
_HANDLE_IN_TEXT = re.compile(r"(?<![\w@])@([A-Za-z0-9_.]+)@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}(?![\w-])")
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]")
_CARD_IN_TEXT = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# National numbers whose written shape and check digits leave no doubt (a bare run of 9-11
# digits, as a Dutch BSN or a Polish PESEL, passes a check digit one time in ten or eleven: not here).
_NATIONAL_IDS = (
    (re.compile(r"(?<![\w.-])\d{3}-\d{2}-\d{4}(?![\w-])"), is_us_ssn),
    (re.compile(r"(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\d-])"), br_cpf_valid),
    (re.compile(r"(?<![\w-])\d{8}-?[A-Z](?![\w-])"), es_dni_valid),
    (re.compile(r"(?<!\d)(?<!\d )[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}(?! ?\d)"), fr_nir_valid),
    (re.compile(r"(?<![A-Za-z0-9])[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"), uk_nino_valid),
    (re.compile(r"(?<![\d.])756\.\d{4}\.\d{4}\.\d{2}(?![\d.])"), ch_ahv_valid),
)
_IBAN_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,30}(?![A-Za-z0-9])")
_SHAPE_OF = {"NAME": is_name, "EMAIL": is_personal_email, "USERNAME": is_username, "ID_NUM": is_id_number,
             "PHONE_NUM": is_personal_phone, "URL_PERSONAL": is_web_address,
             "STREET_ADDRESS": is_street_address}


def emails(text: str) -> list[Span]:
    """The text's e-mail addresses, plain or obfuscated (`obfuscated_emails`); not the
    "user@host" of a fediverse handle ("@user@host")."""
    plain = [(m.start(), m.end(), "EMAIL") for m in _EMAIL_IN_TEXT.finditer(text)
             if is_email(m.group()) and not (m.start() and text[m.start() - 1] == "@")]
    return sorted(plain + obfuscated_emails(text))


_ARTICLES = frozenset("the a an this that my your our his her their its".split())


def obfuscated_emails(text: str) -> list[Span]:
    """Addresses written with "at" and "dot" for "@" and ".": "wk [at] gnupg.org", "imcusg at
    gmail dot com", "<nmav at gnutls.org>". A bare " at " with real dots reads as an address only
    inside a mailbox's angle brackets: "hosted at github.com" is prose."""
    found = []
    for m in OBFUSCATED_EMAIL.finditer(text):
        bare_at = not any(c in m["at"] for c in "[({<")
        dotted = re.search(r"(?i)dot", m["domain"]) is None
        in_mailbox = m.start() > 0 and text[m.start() - 1] == "<" and text[m.end():m.end() + 1] == ">"
        prose = bare_at and re.match(r"\w+", m["domain"])[0].lower() in _ARTICLES  # "at the dot com"
        if ((not bare_at or not dotted or in_mailbox) and not prose
                and unobfuscated_email(m.group())):
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


def urls(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _URL_IN_TEXT.finditer(text) if is_url(m.group())]


def card_and_iban_numbers(text: str) -> list[Span]:
    """Card numbers whose Luhn checksum holds and IBANs whose check digits hold, as ID_NUM."""
    found = [(m.start(), m.end(), "ID_NUM") for m in _CARD_IN_TEXT.finditer(text)
             if luhn_valid(m.group(), lengths=range(13, 20))]
    for match in _IBAN_IN_TEXT.finditer(text):
        # the pattern may run on into a following word in capitals; the longest valid prefix wins
        value = match.group()
        for end in range(len(value), 13, -1):
            if iban_valid(value[:end]) and (end == len(value) or value[end] == " "):
                found.append((match.start(), match.start() + end, "ID_NUM"))
                break
    return found


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
_NAME_TOKEN = re.compile(r"[^\W\d_][\w'’.-]*")
_QUOTED_AT_END = re.compile(r'"([^"\n]{1,80})"[ \t]*,?[ \t]*$')


def _leads_in(word: str) -> bool:
    """Whether a word at the start of a display name's run is no part of the name: a particle
    ("de", before a name here), a lead-in ("From", "AM") or a title or greeting ("Dr.", "Hi")."""
    return not word[0].isupper() or word.strip(".,").lower() in _LEAD_INS | LETTER_WORDS


def _display_name(before: str) -> tuple[int, int] | None:
    """Where the display name lies in `before` (a line up to a mailbox's "<" or "("): the run of
    capitalised words (particles inside it) right before the bracket, or inside the quotes that
    end it ('"Doe, Jane" <...>': a comma there is part of one name), less lead-in words and
    titles; None where there is none, or it reads as a collective, a brand or a service."""
    quoted = _QUOTED_AT_END.search(before)
    offset, region = (quoted.start(1), quoted.group(1)) if quoted else (0, before)
    last_first = quoted is not None and region.count(",") == 1  # "Doe, Jane"; more: a list of people
    tokens = list(re.finditer(r"[^\s\"]+", region.rstrip(" \t',")))
    first = len(tokens)  # the run is tokens[first:], at most five words
    while first > max(0, len(tokens) - 5):
        word = tokens[first - 1].group().rstrip(",") if last_first else tokens[first - 1].group()
        if not (_NAME_TOKEN.fullmatch(word) and (word[0].isupper() or word in NAME_PARTICLES)):
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


def _name_reach(text: str, at: int) -> int:
    """Where a display name ending at `at` may begin: its line's start, or on a longer line the
    first word within DISPLAY_NAME_CHARS (a few words, so each address costs the same however
    long its line is)."""
    reach = max(0, at - DISPLAY_NAME_CHARS)
    newline = text.rfind("\n", reach, at)
    if newline >= 0 or reach == 0:
        return newline + 1
    space = text.find(" ", reach, at)
    return at if space < 0 else space + 1


def mailbox_names(text: str) -> list[Span]:
    """The display names of the text's personal mailboxes, "Name <address>" or "Name (address)",
    as NAME (RFC 5322's name-addr, on one line)."""
    found = []
    for start, end, _ in emails(text):
        if start == 0 or text[start - 1] not in "<(" or is_role_mailbox(text[start:end]):
            continue
        line_start = _name_reach(text, start - 1)
        place = _display_name(text[line_start:start - 1])
        if place and is_name(text[line_start + place[0]:line_start + place[1]]):
            found.append((line_start + place[0], line_start + place[1], "NAME"))
    return found


# Words that name a number as a business's reference, not a person's ("Order 123-45-6789",
# "Rechnung Nr. 4111 ..."), right before it on its line: `complete` adds no number after them.
_REFERENCE_BEFORE = re.compile(
    r"(?i)(?<![\w-])(?:order|invoice|ticket|booking|tracking|shipment|parcel|serial|case|ref|"
    r"reference|confirmation|reservation|transaction|receipt|bestellung|bestell|rechnung|auftrag|"
    r"sendung|commande|facture|pedido|factura|reserva|ordine|fattura|bestelling|factuur)"
    r"(?:[ \t]*(?:number|num|nr|no|n°|nº|#)\.?)?[ \t]*[:#.-]?[ \t]*$")


def after_reference_word(text: str, start: int) -> bool:
    """Whether a number at `start` follows a word that names it a business's reference
    ("Order #", "invoice no.", "Rechnung Nr."), on its line and within 24 characters."""
    return _REFERENCE_BEFORE.search(text, max(0, start - 24), start) is not None


# A phone number's own label right before it on its line: "Tel.:", "Mobile", "Fax (home):",
# "Handy", a vCard's "TEL;TYPE=cell:". Only then does a number's context say it is a phone line.
_PHONE_LABEL = re.compile(
    r"(?i)(?:(?<![\w-])(?:tel|telephone|phone|ph|mobile|mob|cell|cellphone|fax|handy|mobil|telefon|"
    r"tél|téléphone|portable|móvil|movil|telefone|celular|telefono|cellulare|gsm)\.?"
    r"(?:[ \t]*\([^()\n]{1,20}\))?|^tel(?:;[^:\n]*)?)[ \t]*[:.]?[ \t]*"
    r"(?P<number>\+?[\d(][\d \t().\-/]{5,}\d(?:[ \t]*(?:x|ext\.?)[ \t]*\d{1,5})?)", re.MULTILINE)


def labelled_phones(text: str) -> list[Span]:
    """Phone numbers written right after a phone label ("Tel.: +49 30 9018 2245", a vCard's
    "TEL;TYPE=cell:+1-415-937-3419"), not freephone numbers, as PHONE_NUM."""
    return [(m.start("number"), m.end("number"), "PHONE_NUM") for m in _PHONE_LABEL.finditer(text)
            if is_personal_phone(m["number"])]


def national_ids(text: str) -> list[Span]:
    """US social security, Brazilian CPF (written 000.000.000-00), Spanish DNI, French NIR, UK
    National Insurance and Swiss AHV numbers whose check digits (or groups) hold, as ID_NUM."""
    return [(m.start(), m.end(), "ID_NUM") for pattern, valid in _NATIONAL_IDS
            for m in pattern.finditer(text) if valid(m.group())]


def is_national_id(value: str) -> bool:
    """Whether the whole value is one of `national_ids`' numbers."""
    return any(pattern.fullmatch(value) and valid(value) for pattern, valid in _NATIONAL_IDS)


def without_letter_words(text: str, span: Span) -> Span:
    """A NAME span less the greeting, closing or title words it begins with ("Ciao Giulia",
    "Freundliche Grüsse\nNadia Brunner", "Mrs. Lee": titles stay outside a name) and less the
    lines before its last where they end in a comma ("Best,\nNadia"); as it was where nothing
    else would be left."""
    start, end, label = span
    last_line = text.rfind("\n", start, end) + 1  # a sign-off over lines: "Kind regards,\nNadia"
    if start < last_line < end and (text[start:last_line].rstrip().endswith(",")
                                    or only_letter_words(text[start:last_line])):
        start = last_line
    words = list(_NAME_TOKEN.finditer(text, start, end))
    first = 0
    while first < len(words) - 1 and words[first].group().strip(".'’-").lower() in LETTER_WORDS:
        first += 1
    return (words[first].start() if first else start, end, label)


def overlaps(span: tuple[int, int], others: Iterable[tuple[int, ...]]) -> bool:
    """Whether `span` (start, end) shares a character with any of `others`."""
    return any(span[0] < o[1] and o[0] < span[1] for o in others)


def names_per_line(text: str, span: Span) -> list[Span]:
    """A NAME span over line breaks whose every line is a name of two words or more (a list read
    as one name: "Behdad Esfahbod\nDov Grobgeld") as one NAME per line; any other span as it is
    (a name wrapped onto the next line: "Romain\n    Francoise")."""
    start, end, label = span
    if label != "NAME" or "\n" not in text[start:end]:
        return [span]
    lines = [m.span() for m in re.finditer(r"[^\n]+", text[start:end])]
    parts = [(start + a + len(text[start + a:start + b]) - len(text[start + a:start + b].lstrip()),
              start + a + len(text[start + a:start + b].rstrip())) for a, b in lines]
    if all(len(text[a:b].split()) >= 2 and is_name(text[a:b]) for a, b in parts):
        return [(a, b, "NAME") for a, b in parts]
    return [span]


# Header lines whose "addresses" name a message or an event, not a person ("Message-ID:
# <2013...@acmenet.de>", an iCalendar "UID:...@google.com").
_ID_HEADER = re.compile(r"[ \t]*(?:message-id|resent-message-id|in-reply-to|references|content-id|"
                        r"uid|x-[\w-]*-id)[ \t]*[:;]", re.IGNORECASE)
# A list's own addresses name the list: "ppp-request@zzz.org" makes "ppp@zzz.org" a list.
_LIST_OWN_ADDRESS = re.compile(r"(?<![\w.+-])(?:owner-(?P<owned>[\w.+-]+)|(?P<list>[\w.+-]+?)-"
                               r"(?:request|owner|admin|bounces))@(?P<host>[\w.-]+\w)", re.IGNORECASE)


def mailing_lists(text: str) -> set[str]:
    """The addresses of the mailing lists whose own addresses the text holds, lower-cased."""
    return {f"{m['owned'] or m['list']}@{m['host']}".lower() for m in _LIST_OWN_ADDRESS.finditer(text)}


def no_ones_address(text: str, span: tuple[int, ...], lists: set[str]) -> bool:
    """Whether an address names no person where it stands: on a message or event id's line, or
    a mailing list's whose own addresses the text holds (`mailing_lists`)."""
    line_start = text.rfind("\n", 0, span[0]) + 1
    return (_ID_HEADER.match(text, line_start) is not None
            or text[span[0]:span[1]].lower() in lists)


def check(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans without those whose value lacks their label's shape or that name no
    one where they stand (`no_ones_address`), national numbers (a social security number, a
    CPF) labelled ID_NUM, a fediverse handle's user a USERNAME, names without a greeting or
    title before them and a list of names read as one split into its lines."""
    relabelled = [handle_as_username(text, (start, end, "ID_NUM" if is_national_id(text[start:end])
                                            else label)) for start, end, label in spans]
    split = [part for s in relabelled for part in names_per_line(text, s)]
    trimmed = [without_letter_words(text, s) if s[2] == "NAME" else s for s in split]
    lists = mailing_lists(text)
    kept = [s for s in trimmed if (s[2] not in _SHAPE_OF or _SHAPE_OF[s[2]](text[s[0]:s[1]]))
            and not (s[2] == "EMAIL" and no_ones_address(text, s, lists))]
    return list(dict.fromkeys(kept))  # "Ciao Giulia" trimmed may be the model's "Giulia" too


# The area or country code a model may leave off a phone number: "(02) " or "+61 " right before it.
_PHONE_CODE_BEFORE = re.compile(r"(?<![\w+(])(?:\(\+?\d{1,4}\)|\+\d{1,3}) $")


def with_phone_code(text: str, start: int) -> int:
    """Where a phone number beginning at `start` begins with the area or country code written
    right before it ("(02) 9374 4000" of "9374 4000"); `start` where there is none."""
    code = _PHONE_CODE_BEFORE.search(text, max(0, start - 8), start)
    return start if code is None else code.start()


# An initial a model may leave off a name: "M. " of "M. Conti", "J.-B. " of "J.-B. Lefèvre".
_INITIAL_BEFORE = re.compile(r"(?<![\w.-])[A-Z]\.(?:-[A-Z]\.)? $")


def with_initial(text: str, start: int) -> int:
    """Where a name beginning at `start` begins with the initial written right before it; `start`
    where there is none."""
    initial = _INITIAL_BEFORE.search(text, max(0, start - 6), start)
    return start if initial is None else initial.start()


def extend(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans, each one that lies strictly inside an e-mail address (then labelled
    EMAIL) or URL grown to it, a phone number grown over the area or country code written right
    before it, and a name over its initial."""
    addresses = [s[:2] for s in emails(text)]
    wholes = addresses + urls(text)
    out = []
    for start, end, label in spans:
        around = [w for w in wholes if w[0] <= start and end <= w[1] and w != (start, end)]
        if around:  # part of an address is the address ("nmav" of "nmav at gnutls.org")
            label = "EMAIL" if around[0] in addresses else label
            start, end = around[0]
        elif label == "PHONE_NUM":
            start = with_phone_code(text, start)
        elif label == "NAME":
            start = with_initial(text, start)
        out.append((start, end, label))
    return list(dict.fromkeys(out))


def complete(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans, and the e-mail addresses, fediverse handles' users, card numbers, IBANs
    and national numbers it missed (no number named an order's, an invoice's or the like)."""
    lists = mailing_lists(text)
    personal = [s for s in emails(text)
                if not is_role_mailbox(text[s[0]:s[1]]) and not no_ones_address(text, s, lists)]
    numbers = [s for s in card_and_iban_numbers(text) + national_ids(text)
               if not after_reference_word(text, s[0])] + labelled_phones(text)
    added = [s for s in personal + fediverse_users(text) + numbers if not overlaps(s[:2], spans)]
    return sorted(spans + added)


def mailbox(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans, and the mailboxes' display names it missed."""
    return sorted(spans + [s for s in mailbox_names(text) if not overlaps(s[:2], spans)])


def combine(text: str, spans: list[Span], modes: Iterable[str]) -> list[Span]:
    """Apply the named modes in the order extend, check, complete, mailbox (a cut value is
    grown before its shape is judged)."""
    modes = set(modes)
    unknown = modes - set(MODES)
    if unknown:
        raise ValueError(f"unknown validator modes {sorted(unknown)}; known: {', '.join(MODES)}")
    steps = (("extend", extend), ("check", check), ("complete", complete), ("mailbox", mailbox))
    for name, step in steps:
        if name in modes:
            spans = step(text, spans)
    return spans


def on_items(text: str, items: list[dict], modes: Iterable[str]) -> tuple[list[dict], list[dict]]:
    """`combine` on extract's placed items ({value, label, spans: [{start, end}]}, maybe
    "found_by"): the items after it, in text order (those the patterns added marked "found_by":
    "pattern", the others keeping theirs), and the model's items that `check` dropped."""
    modes = set(modes)
    if not modes:
        return items, []
    by_model, rejected, found_by = set(), [], {}
    for item in items:  # one item at a time, so a dropped one can be named
        kept = combine(text, [(s["start"], s["end"], item["label"]) for s in item["spans"]],
                       modes - ADDING)
        if not kept:
            rejected.append({"value": item["value"], "label": item["label"]})
        by_model.update(kept)
        if "found_by" in item:  # the second look's items keep their mark
            found_by.update((span, item["found_by"]) for span in kept)
    final = combine(text, sorted(by_model), modes & ADDING)
    grouped: dict[tuple[str, str], list[Span]] = {}
    for span in final:
        grouped.setdefault((text[span[0]:span[1]], span[2]), []).append(span)
    out = []
    for (value, label), places in grouped.items():
        item = {"value": value, "label": label,
                "spans": [{"start": start, "end": end} for start, end, _ in places]}
        marks = [found_by[place] for place in places if place in found_by]
        if not by_model.intersection(places):
            item["found_by"] = "pattern"
        elif marks:
            item["found_by"] = marks[0]
        out.append(item)
    return out, rejected
