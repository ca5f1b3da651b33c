"""Values with a fixed shape, found or checked without the model: the validators' half of extract.

A model reads context (whose address, which number is personal) but can miscopy or cut a value;
a pattern has no context but never miscopies. Five ways to combine them, measured on the
real-text dev set and test sets' probe halves (docs/evaluation.md, "Model and validators" and the
sections after it), and two more asked for by name:

- `extend`:   grow a model item that is cut inside an e-mail address (as EMAIL) or URL to the
              whole value, a phone number over the area or country code written right before
              it ("(02) " of "(02) 9374 4000"), a name over its initial ("M. " of "M. Conti")
              or to the mailbox's display name it lies in ("Watson" of '"Watson, Dan" <...>'),
              and any item to the HL7 field value it lies in (piilab.hl7);
- `check`:    drop a model item whose value cannot have its label's shape: an e-mail, phone or
              web address of the wrong shape, a role mailbox ("support@...") or a mailing list's
              address ("bug-coreutils@...", "...@lists.debian.org") as EMAIL, a
              freephone number (0800 ..., 1-800-...) or a date as PHONE_NUM, a phone or ID
              number right after a business's reference word ("Invoice number:"), a "name" with
              digits or code characters, that is an identity label ("Steuernummer", "NIF"),
              ending in a company's legal form ("... GmbH"), holding an
              institution's noun ("... Office") or made only of words that greet, thank, title
              or head a letter ("Bonjour", "Madame", "Betreff"), a "username" with spaces or
              slashes or that is a channel, file name or constant, an "ID" with fewer than four
              digits or that is a file path, code, a CVE id, a UUID, a timestamp, a date or an
              issue reference, an "address" with no number, that reads as a sentence or that
              an organisation's name heads ("Magistrates' Court\n223 William Street")
              (piilab.data.validators; each keeps every value the generator writes and every
              value in the dev set) or that reaches over a bank statement's field tag
              (":61:...") or lies in a vCard's field about the card (its UID;
              piilab.vcards) or over a property's name ("RRULE:"); cut a form's caption off
              any value ("Anschrift: ..."), greetings and titles off a name ("Ciao Giulia")
              and a country line off an address ("...\n10178 Berlin\nGermany"); and
              relabel a national number in its own shape (123-45-6789, 000.000.000-00) or
              after an identity label ("NHS number: ...", piilab.labelled_values) ID_NUM,
              whatever the model called it (PHONE_NUM, mostly), and a fediverse handle's
              "user@host" and a vCard's messenger handle ("X-ICQ:...") USERNAME;
- `complete`: add e-mail addresses (not role mailboxes; obfuscated ones too, "wk [at]
              gnupg.org", "jo at example dot org", "<nmav at gnutls.org>"), the user of a
              fediverse handle ("@user@host", as USERNAME), Luhn-valid card numbers, IBANs and national numbers
              (US SSN, Brazilian CPF, Spanish DNI, French NIR, UK NINO, Swiss AHV) with valid
              check digits that the model missed, but none right after a word that names it
              a business's reference ("Order #", "Rechnung Nr."; piilab.numbers), phone
              numbers right after a phone label ("Tel.:", "Mobile", a vCard's "TEL;TYPE=cell:",
              "my phone number is", "call me on"; not freephone), identity numbers right after a label
              naming them a person's ("Kundennummer:", "PPSN:", "mi CUIL";
              piilab.labelled_values), an HL7 message's patient's, next of kin's, guarantor's
              and insured's names, addresses, phone numbers and IDs by their fields (piilab.hl7),
              the account of a bank statement's ":25:" field
              (piilab.statements), a vCard's messenger handles and N names and a chat log's
              speakers' nicks ("<quietmoth> which python", piilab.chat_logs); no URLs or
              other phone numbers: public links and numbers look the same as personal
              ones, and only context tells them apart;
- `phones`:   add the phone numbers the model missed that are written with no label in a
              phone's own shape ("(617) 555-0148", "+44 20 7946 0958"). Not in `extract`'s
              defaults: a number's shape does not say whose it is;
- `mailbox`:  add the display name of a personal mailbox ("Jens Axboe <jens@axboe.dk>", as
              mail headers, changelogs, copyright lines and package metadata write them) as
              NAME where the model missed it, and a name in the first column of a table row
              whose second is its address ("Paul Eggert       eggert@cs.ucla.edu", as THANKS
              and AUTHORS files list people); a team's or company's name is left alone;
- `lists`:    add the names on the lines of a list of people that the model skipped, where it
              named at least half of the list's lines ("Adam Sampson\nAdam Tkac\n...";
              piilab.name_lists);
- `postal`:   add the postal addresses the model missed that stand as an address block or a
              form's address line ("Lindenweg 3\n79100 Freiburg", "14 Carrow Road, Norwich NR1
              1HS"; piilab.postal), but not an organisation's: none under a line that names
              premises or in which nothing was found ("Bakkerij Peeters\nDorpsstraat 12"). Not in
              `extract`'s defaults: it finds addresses no one owns in view, businesses' among them.

Spans are (start, end, label) tuples over one text, end exclusive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from piilab.addresses import (NAME_TOKEN, Span, emails, fediverse_users, handle_as_username,
                               mailbox_names, no_ones_addresses, without_post_nominals)
from piilab.data.places import is_country, is_premises
from piilab.data.validators import (IMPERSONAL_CAPTIONS, LETTER_WORDS, NAME_PARTICLES, is_id_number,
                                   is_name, is_personal_email, is_personal_phone, is_street_address,
                                   is_url, is_username, is_web_address, only_letter_words)
from piilab.chat_logs import chat_handles
from piilab.errors import PiilabError
from piilab.hl7 import hl7_values
from piilab.labelled_values import is_identity_label, labelled_ids, labelled_phones
from piilab.name_lists import listed_names
from piilab.numbers import (after_reference_word, card_and_iban_numbers, is_national_id, national_ids,
                            persons_number, unlabelled_phones)
from piilab.postal import line_above, postal_addresses
from piilab.span_sets import containing, overlaps, taken_by
from piilab.statements import over_field_tag, statement_accounts
from piilab.vcards import card_only_values, messenger_handles, property_names, structured_names

MODES = ("extend", "check", "complete", "phones", "mailbox", "lists", "postal")  # the order they apply in
ADDING = frozenset({"complete", "phones", "mailbox", "lists", "postal"})  # the modes that add spans the model did not write
EXTRACT_MODES = ("extend", "check", "complete", "mailbox", "lists")
"""`piilab extract`'s (and piilab.extractor's) validators, chosen on the real-text dev set
(docs/evaluation.md, "Model and validators"); `phones` and `postal` are asked for by name
(docs/evaluation.md, "Postal addresses found by their shape" and "Bank statements' accounts and
phone numbers by their shape")."""


def modes_from(value: str) -> tuple[str, ...]:
    """Validator modes as a user writes them: comma-separated names, "none", or a leading "+"
    for extract's defaults and the names after it ("+postal")."""
    value = value.strip()
    if value == "none":
        return ()
    names = tuple(m.strip() for m in value.removeprefix("+").split(",") if m.strip())
    return tuple(dict.fromkeys(EXTRACT_MODES + names)) if value.startswith("+") else names


def checked_modes(modes: str | Iterable[str], setting: str = "--validators") -> tuple[str, ...]:
    """Validator modes as `modes_from` reads a string, or as given; an error naming `setting`
    and every known mode where one is not a mode."""
    modes = modes_from(modes) if isinstance(modes, str) else tuple(modes)
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise PiilabError(f"{setting}: unknown {', '.join(unknown)} (use {', '.join(MODES)})")
    return modes


_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]")
_SHAPE_OF = {"NAME": is_name, "EMAIL": is_personal_email, "USERNAME": is_username, "ID_NUM": is_id_number,
             "PHONE_NUM": is_personal_phone, "URL_PERSONAL": is_web_address,
             "STREET_ADDRESS": is_street_address}


def urls(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _URL_IN_TEXT.finditer(text) if is_url(m.group())]


# What `on_items` asks about a text once per item, found once per text (as `emails` is).

@lru_cache(maxsize=16)
def _wholes(text: str):
    """The finders of the e-mail address, the URL and the personal mailbox's display name a span
    lies inside (`containing`)."""
    return (containing([s[:2] for s in emails(text)]), containing(urls(text)),
            containing([s[:2] for s in mailbox_names(text)]))


@lru_cache(maxsize=16)
def _field_values(text: str):
    """The text's HL7 field values by their place, and the finder of the one a span lies in."""
    by_field = {s[:2]: s[2] for s in hl7_values(text)}
    return by_field, containing(list(by_field))


@lru_cache(maxsize=16)
def _syntax(text: str):
    """Whether a span touches a format's syntax: an MT940 field tag (`over_field_tag`), a vCard's
    field about the card itself or a property's name (`card_only_values`, `property_names`)."""
    return over_field_tag(text), taken_by(card_only_values(text) + property_names(text))


@lru_cache(maxsize=16)
def _labelled_places(text: str) -> tuple[frozenset, frozenset]:
    """Where the text's labels make a value an ID (`labelled_ids`) and where its layout makes one
    a handle (a vCard's messenger field, a chat log's speaker)."""
    return (frozenset(s[:2] for s in labelled_ids(text)),
            frozenset(s[:2] for s in messenger_handles(text) + chat_handles(text)))


def without_letter_words(text: str, span: Span) -> Span:
    """A NAME span less the greeting, closing or title words it begins with ("Ciao Giulia",
    "Freundliche Grüsse\nNadia Brunner", "Mrs. Lee": titles stay outside a name), the degrees
    and honours it ends with ("Stephanie Johnson DDS", "John E. Doe, Ph.D."), and the lines
    before its last where they end in a comma ("Best,\nNadia"); as it was where nothing else
    would be left."""
    start, end, label = span
    last_line = text.rfind("\n", start, end) + 1  # a sign-off over lines: "Kind regards,\nNadia"
    if start < last_line < end and (text[start:last_line].rstrip().endswith(",")
                                    or only_letter_words(text[start:last_line])):
        start = last_line
    named = without_post_nominals(text[start:end]).rstrip(" \t,")
    end = start + len(named) if named.strip() else end
    words = list(NAME_TOKEN.finditer(text, start, end))
    first = 0
    while first < len(words) - 1 and words[first].group().strip(".'’-").lower() in LETTER_WORDS:
        first += 1
    return (words[first].start() if first else start, end, label)


def names_per_line(text: str, span: Span) -> list[Span]:
    """A NAME span over line breaks whose every (non-blank) line is a name of two words or more
    (a list read as one name: "Behdad Esfahbod\nDov Grobgeld", "- Ana Lima,\n- Rui Sá") as one
    NAME per line, bullets and commas left out; any other span as it is (a name wrapped onto the
    next line: "Romain\n    Francoise", "Maria de la\nCruz Garcia")."""
    start, end, label = span
    if label != "NAME" or "\n" not in text[start:end]:
        return [span]
    parts = [(start + m.start(1), start + m.end(1)) for m in re.finditer(
        r"[ \t]*(?:(?:[-*•]|\d{1,3}[.)])[ \t]+)?[,;]?[ \t]*([^\s,;](?:[^\n]*[^\s,;])?)", text[start:end])]
    lists = len(parts) > 1 and all(len(text[a:b].split()) >= 2 and is_name(text[a:b]) for a, b in parts)
    wrapped = any(text[a:b].split()[-1].lower() in NAME_PARTICLES for a, b in parts[:-1])
    return [(a, b, "NAME") for a, b in parts] if lists and not wrapped else [span]


def without_country(text: str, span: Span) -> Span:
    """An address span less its last line or comma-separated part where that is a country's name
    alone ("...\n10178 Berlin\nGermany", "..., Lyon, France"): an address runs through postcode,
    city and region, without the country (docs/evaluation.md, the label's definition)."""
    start, end, label = span
    value = text[start:end]
    cut = max(value.rfind("\n"), value.rfind(","))
    kept = value[:max(cut, 0)].rstrip(" \t\r\n,")
    return (start, start + len(kept), label) if kept and is_country(value[cut + 1:]) else span


def premises_address(text: str, span: Span) -> bool:
    """Whether an address is an organisation's: its own first line, or the line right above it,
    names premises (`is_premises`: "Bank Avrasiya\n70 Nizami küç.", "Magistrates' Court\n223
    William Street"); a business's address is no one's PII."""
    start, end, _ = span
    value = text[start:end]
    return ("\n" in value and is_premises(value.split("\n", 1)[0])) or is_premises(line_above(text, start)[1])


def under_unfound_line(text: str, span: Span, spans: list[Span]) -> bool:
    """Whether the line right above an address holds words the model found nothing in: a line
    that heads an address and is no one's name the model saw ("Bakkerij Peeters\nDorpsstraat 12")
    names an organisation, as an envelope heads an address with its addressee. A caption ("Ship
    to:"), a blank line or nothing above it leaves the address anyone's."""
    above_start, above = line_above(text, span[0])
    if not above.strip() or above.rstrip().endswith(":"):
        return False
    above_end = above_start + len(above)
    return not overlaps((above_start, above_end), spans)


# A form's caption at a value's start: one to three words, a colon, a space or line break.
_CAPTION = re.compile(r"[^\W\d_][\w.'’-]*(?:[ \t]+[^\W\d_][\w.'’-]*){0,2}[ \t]*:\s+(?=\S)")


def without_caption(text: str, span: Span) -> Span:
    """A span less the form's caption it begins with ("Anschrift: Hauptstraße 48a, ...",
    "Personnummer: 19850612-2398", "Adres:\nChemików 7"): a model that copies a form's whole
    line takes the caption too, and no label's value begins with words and a colon. Never a
    URL's scheme ("https://"), a time ("16:30") or a colon not followed by a space."""
    start, end, label = span
    caption = _CAPTION.match(text, start, end)
    return span if caption is None else (caption.end(), end, label)


def in_impersonal_field(text: str, span: Span) -> bool:
    """Whether a span is the value of a form's field that asks for an organisation or a place:
    its line before it is a caption (as `without_caption` reads one) whose last word is such a
    word ("Company: Deloitte", "Employer: Discovery Health", "city: Musterstadt";
    `validators.IMPERSONAL_CAPTIONS`)."""
    start = text.rfind("\n", 0, span[0]) + 1
    start += len(text[start:span[0]]) - len(text[start:span[0]].lstrip(" \t"))  # past an indent
    caption = _CAPTION.match(text, start)
    return (caption is not None and caption.end() == span[0]
            and caption[0].split(":")[0].split()[-1].lower() in IMPERSONAL_CAPTIONS)


# The labels of numbers, which a business's reference word before them makes the business's.
_NUMBERS = frozenset({"PHONE_NUM", "ID_NUM"})
# What `check` trims off a span of each label.
_TRIMS = {"NAME": without_letter_words, "STREET_ADDRESS": without_country}


def relabelled(text: str, spans: list[Span]) -> list[Span]:
    """The spans with the label the text itself decides: ID_NUM for a national number in its own
    shape or a number after an identity label (`labelled_ids`), USERNAME for a vCard's messenger
    handle (`messenger_handles`), a chat log's speaker (`chat_handles`) and a fediverse handle's
    user (`handle_as_username`), and an HL7 field value's own label (`hl7_values`)."""
    ids, handles = _labelled_places(text)
    by_field, _ = _field_values(text)
    out = []
    for start, end, label in spans:
        if (start, end) in by_field:
            label = by_field[start, end]
        elif is_national_id(text[start:end]) or (start, end) in ids:
            label = "ID_NUM"
        elif (start, end) in handles:
            label = "USERNAME"
        out.append(handle_as_username(text, (start, end, label)))
    return out


def check(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans, `relabelled`, a form's caption cut off any value (`without_caption`),
    names without a greeting or title before them, a list of names read as one split into its
    lines, an address without its country line; and without those whose value lacks their
    label's shape, that name no one where they stand (`no_ones_addresses`), an address that an
    organisation's name heads (`premises_address`), a name in a field that asks for an
    organisation or a place (`in_impersonal_field`) or that is an identity label ("NIF"), a
    phone or ID number right after a word naming it a business's reference ("Invoice number:",
    `after_reference_word`), and anything over a bank statement's field tag (":61:",
    `over_field_tag`), in a vCard's field about the card itself (its UID, `card_only_values`)
    or over a vCard's or iCalendar file's property name ("RRULE", `property_names`)."""
    labelled = relabelled(text, [without_caption(text, s) for s in spans])
    split = [part for s in labelled for part in names_per_line(text, s)]  # before a sign-off's ","
    trimmed = [_TRIMS[s[2]](text, s) if s[2] in _TRIMS else s for s in split]
    split = [part for s in trimmed for part in names_per_line(text, s)]  # after a greeting's line
    nobody = no_ones_addresses(text)
    over_tag, about_card = _syntax(text)
    by_field, _ = _field_values(text)  # an HL7 field's value: "Miller^Paul^One" is a name there
    kept = [s for s in split if (s[2] not in _SHAPE_OF or _SHAPE_OF[s[2]](text[s[0]:s[1]])
                                 or by_field.get(s[:2]) == s[2]
                                 or (s[2] == "ID_NUM" and persons_number(text, s)))
            and not over_tag(s[0], s[1]) and not about_card(s[0], s[1])
            and not (s[2] in _NUMBERS and after_reference_word(text, s[0]))
            and not (s[2] == "EMAIL" and nobody(s[0], s[1]))
            and not (s[2] == "STREET_ADDRESS" and premises_address(text, s))
            and not (s[2] == "NAME" and (in_impersonal_field(text, s)
                                          or is_identity_label(text[s[0]:s[1]])))]
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
    before it, and a name to the display name of the personal mailbox it lies in (`mailbox_names`)
    or else over its initial."""
    in_address, in_url, in_display_name = _wholes(text)
    by_field, in_field = _field_values(text)
    out = []
    for start, end, label in spans:
        address, url, field = in_address(start, end), in_url(start, end), in_field(start, end)
        if field:  # part of an HL7 field's value is the value ("Paul" of "Miller^Paul^One")
            (start, end), label = field, by_field[field]
        elif address:  # part of an address is the address ("nmav" of "nmav at gnutls.org")
            (start, end), label = address, "EMAIL"
        elif url:
            start, end = url
        elif label == "PHONE_NUM":
            start = with_phone_code(text, start)
        elif label == "NAME" and in_display_name(start, end):
            start, end = in_display_name(start, end)
        elif label == "NAME":
            start = with_initial(text, start)
        out.append((start, end, label))
    return list(dict.fromkeys(out))


def complete(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans, and what it missed: personal e-mail addresses, fediverse handles' users,
    phone numbers after a phone label, card numbers, IBANs and national numbers (none of these
    right after a word naming it an order's, an invoice's or the like), identity numbers after
    an identity label (`labelled_ids`), a bank statement's account (`statement_accounts`) and
    a vCard's messenger handles (`messenger_handles`) and the names of its N fields
    (`structured_names`)."""
    nobody = no_ones_addresses(text)
    personal = [s for s in emails(text) if not nobody(s[0], s[1])]
    numbers = [s for s in card_and_iban_numbers(text) + national_ids(text)
               if not after_reference_word(text, s[0])] + labelled_phones(text) + statement_accounts(text)
    shaped = taken_by(numbers)  # a number's own shape knows its extent ("AB 12 34 56 C"), a label not
    numbers += [s for s in labelled_ids(text) if not shaped(s[0], s[1])]
    taken = taken_by(spans)
    handles = fediverse_users(text) + messenger_handles(text) + chat_handles(text)
    found = personal + handles + structured_names(text) + numbers + hl7_values(text)
    added = [s for s in found if not taken(s[0], s[1])]
    return sorted(spans + list(dict.fromkeys(added)))  # an IBAN may be a statement's account too


def phones(text: str, spans: list[Span]) -> list[Span]:
    """The spans so far, and the phone numbers in a phone's own shape they missed
    (`unlabelled_phones`: North America's, or led by a "+" country code)."""
    taken = taken_by(spans)
    return sorted(spans + [s for s in unlabelled_phones(text) if not taken(s[0], s[1])])


def mailbox(text: str, spans: list[Span]) -> list[Span]:
    """The model's spans, and the mailboxes' display names it missed."""
    taken = taken_by(spans)
    return sorted(spans + [s for s in mailbox_names(text) if not taken(s[0], s[1])])


def lists(text: str, spans: list[Span]) -> list[Span]:
    """The spans so far, and the names on the lines of a list of people they skipped
    (`listed_names`)."""
    return sorted(spans + listed_names(text, spans))


def postal(text: str, spans: list[Span]) -> list[Span]:
    """The spans so far, and the address blocks and lines they missed (`postal_addresses`):
    not an organisation's (`premises_address`), nor one under a line where nothing was found
    (`under_unfound_line`)."""
    taken = taken_by(spans)
    added = [s for s in postal_addresses(text) if not taken(s[0], s[1]) and is_street_address(text[s[0]:s[1]])
             and not premises_address(text, s) and not under_unfound_line(text, s, spans)]
    return sorted(spans + added)


def combine(text: str, spans: list[Span], modes: Iterable[str]) -> list[Span]:
    """Apply the named modes in the order of MODES (a cut value is grown before its shape is
    judged; an address's head is judged by all that was found)."""
    modes = set(checked_modes(modes, "validator modes"))
    steps = (("extend", extend), ("check", check), ("complete", complete), ("phones", phones),
             ("mailbox", mailbox), ("lists", lists), ("postal", postal))
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
