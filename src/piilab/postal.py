"""Postal addresses written as envelopes and forms write them, found without the model.

A model trained on documents where an address comes with its owner ("I moved to ...", a letter's
sender) leaves out an address that stands alone: an address block, or a form's or a parcel's
address line, "Lindenweg 3\\n79100 Freiburg", "14 Carrow Road, Norwich NR1 1HS". Such a
block has a shape of its own: a street line with a house number, then the locality (a postcode
and a town, a town and a state and ZIP code) on its own line or after a comma. `postal_addresses`
finds blocks with that shape and nothing weaker: a street line and a postcode, or a street line
whose street is named a street ("Road", "rue", "-straße") and a town with nothing after them. An
address in the middle of a sentence is left to the model, which sees whose it is. Whether an
address is an organisation's is asked by `piilab.shapes.postal`, the validator that adds these
(`premises_address`, `under_unfound_line`).

The words come from the address formats of the countries piilab composes documents for
(src/piilab/data/frames/locales.yaml, Faker's street names) and the usual abbreviations; the
choices are measured in docs/evaluation.md, "Postal addresses found by their shape".
Spans are (start, end, label) tuples over one text, end exclusive.
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.data.places import is_country, is_premises
from piilab.data.validators import LETTER_WORDS

# A street's kind written as its own word after the name ("Carrow Road", "Lakeview Dr"),
# with USPS and Royal Mail abbreviations.
_TYPE_AFTER = ("street st road rd avenue ave av lane ln drive dr boulevard blvd court ct place pl "
               "way terrace terr tce crescent cres close parkway pkwy highway hwy square sq row mews "
               "grove gardens gdns walk hill parade circle cir trail trl plaza path alley loop pike "
               "turnpike drove broadway gasse allee straße strasse weg platz ring").split()
# ... or before it ("rue des Lilas", "Via Roma", "ul. Chemików", "Calle Mayor").
_TYPE_BEFORE = ("rue avenue av boulevard bd chemin allée impasse place quai route cours via viale piazza "
                "corso vicolo largo strada calle avenida avda paseo plaza carrer camino ronda travesía rua "
                "travessa praça alameda estrada ul ulica al aleja pl os osiedle str bulevardul calea "
                "aleea šoseaua plac ул улица пр проспект пер переулок бул").split()
# ... or as the end of the name's last word ("Sautierstraße", "Prinsengracht", "Storgatan").
_TYPE_ENDINGS = ("straße", "strasse", "str.", "gasse", "allee", "damm", "chaussee", "ufer", "straat",
                 "laan", "gracht", "kade", "singel", "plein", "gatan", "vägen", "gränd", "torget", "gade",
                 "vej", "stræde", "veien", "vegen", "katu", "kuja", "utca", "körút")
LONGEST_LINE, LONGEST_PART = 160, 80  # longer lines and parts are no address's: not searched
_DIRECTIONS = r"(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)"

_NUMBER = r"\d{1,5}(?:(?:-?[A-Za-z]|[ ][A-Z])(?!\w))?(?:[-/]\d{1,5}[A-Za-z]?)?"  # "7", "4-6", "2455-B", "72/98", "8a", "12 B"
_WORD = r"[^\W\d_][\w'’.-]*"
# A street line's or part's own start: a house number then the street ("14 Carrow Road",
# "8 avenue Jean Jaurès", "12, rue des Lilas"), or the street then the number
# ("Lindenweg 3", "Piazza Benedetto, 77", "ul. Witosa 984", "Storgatan 1").
_NUMBER_FIRST = re.compile(rf"(?P<number>{_NUMBER}),?[ \t]+(?P<street>(?:{_WORD}|\d+(?:\.\d+)?)"
                           rf"(?:[ \t]+(?:{_WORD}|\d+(?:\.\d+)?)){{0,5}})")
_NAME_FIRST = re.compile(rf"(?P<street>{_WORD}(?:[ \t]+{_WORD}){{0,4}}),?[ \t]+(?:nr\.?[ \t]*)?"
                         rf"(?P<number>{_NUMBER})(?![\w/-])")

_PLACE = rf"(?:'[st][ \t]+)?{_WORD}(?:[ \t]+(?:-[ \t]+)?{_WORD}){{0,4}}"  # "Mount Victoria", "Ústí nad Labem"
_UK_POSTCODE = r"(?:[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|[AC-FHKNPRTV-Y]\d{2}[ \t]?[AC-FHKNPRTV-Y0-9]{4})"  # or an Eircode
_ZIP = r"\d{5}(?:-\d{4})?"
# A locality with a postcode, as one line or part: "10178 Berlin", "48-347 Mysłowice", "112 01
# Stockholm", "7080 RN Roderesch", "D-10178 Berlin", "East Tonyshire, NC 80119", "Kramerbury WA
# 0866", "Auckland 1011", "W1U 8JH London", "Norwich NR1 1HS", "NR1 1HS", "TX 77098",
# "62704-1234", "Vigo Di Cadore (AO)" after its code, a Canadian "A1A 1A1".
_POSTCODE_LOCALITY = re.compile(
    rf"(?:(?:[A-Z]{{1,2}}-)?\d{{4,5}}|\d{{3}}[ \t]\d{{2}}|\d{{2}}-\d{{3}}|\d{{4}}[ \t]?[A-Z]{{2}})[ \t]+{_PLACE}"
    rf"(?:[ \t]*\([A-Z]{{2}}\))?"
    rf"|{_PLACE},?[ \t]+(?:[A-Z]{{2,3}}[ \t]+)?(?:\d{{4,6}}(?:-\d{{3,4}})?|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d)"
    rf"|(?:{_PLACE}[ \t]+)?{_UK_POSTCODE}(?:[ \t]+{_PLACE})?"
    rf"|(?:[A-Z]{{2}}[ \t]+)?{_ZIP}|\d{{5}}-?\d{{3}}")
# A line or part that names a place only: a town, a district, a state ("Mount Victoria", "NC",
# "Novais do Amparo - SE"): capitalised words, lower-case particles between them.
_PLACE_ONLY = re.compile(rf"{_PLACE}(?:[ \t]+-[ \t]+[A-Z]{{2}})?")
# A unit or building within the address, as a line or part: "Apt 24", "Flat 3B", "Suite 1005",
# "Block 1", "Wohnung 24", "Bât. 24", "Scala 24", "Lgh 24", "m. 24", "4. OG", "24. tv.", "STE 1".
_UNIT = re.compile(r"(?i:apt|apartment|flat|suite|ste|unit|block|floor|fl|level|building|bldg|room|"
                   r"rm|studio|wohnung|top|stiege|bât|bat|appartement|piso|scala|interno|apto|bloco|"
                   r"lgh|m|as|h\.no|trappa|piano|appartamento|puerta|portal|escalera|esc)\.?[ \t]*#?\d+[A-Za-z]?(?:[ \t]+\w+){0,2}"
                   r"|\d{1,3}(?:\.|º)[ \t]*(?i:og|tv\.?|th\.?|b|etage|stock|floor)")

_UNIT_FIRST = re.compile(rf"(?:{_UNIT.pattern})[ \t]*,?[ \t]+(?=\d)")


def _line_end(text: str, at: int) -> int:
    """Where the line holding position `at` ends (its newline, or the text's end)."""
    end = text.find("\n", at)
    return len(text) if end < 0 else end


def _is_place(part: str) -> bool:
    """Whether a part names a place only: its words capitalised but for short particles."""
    if _PLACE_ONLY.fullmatch(part) is None:
        return False
    words = re.findall(r"[^\W\d_][\w'’.]*", part)
    return (words[0][0].isupper() and all(w[0].isupper() or len(w) <= 3 for w in words)
            and not any(w.strip(".").lower() in LETTER_WORDS for w in words))  # "Dear Sir", "Regards"


def _has_postcode(part: str) -> bool:
    match = _POSTCODE_LOCALITY.fullmatch(part)
    return match is not None and (part[0].isdigit() or part[0].isupper())


def _kind(part: str) -> str | None:
    """What a line or comma part of an address below or after its street is: "postcode",
    "unit", "place" or "country"; None for anything else (where an address ends)."""
    part = part.strip().rstrip(".")
    if not part or len(part) > LONGEST_PART:
        return None
    if is_country(part):
        return "country"
    if is_premises(part):
        return None  # "Müller Bau GmbH" under a sender's address
    if _has_postcode(part):
        return "postcode"
    if _UNIT.fullmatch(part):
        return "unit"
    return "place" if _is_place(part) else None


def _typed(street: str) -> bool:
    """Whether a street's name says it is a street ("Carrow Road", "rue des ...", "Sautierstraße")."""
    words = [w.strip(".,").lower() for w in street.split()]
    if not words:
        return False
    return (words[0] in _TYPE_BEFORE or any(w in _TYPE_AFTER for w in words[1:])
            or any(w.endswith(_TYPE_ENDINGS) and len(w) > 6 for w in words))


def _street(line: str, below_unit: bool = False) -> tuple[int, bool, bool] | None:
    """Where a line's street part ends, whether its name says it is a street and whether its
    number ends it, where the line (or its first comma part) is a street with a house number, or
    below a unit's line ("Flat 60\nNathan Court") a street named a street; else None."""
    if _UNIT.fullmatch(line.strip()):
        return None  # "Scala 24", "Block 1": a unit's line, not a street's
    for pattern in (_NUMBER_FIRST, _NAME_FIRST):
        match = pattern.match(line)
        if match is None:
            continue
        street = match["street"]
        typed = _typed(street)
        end = match.end()
        if pattern is _NUMBER_FIRST:
            # the street's name ends at its kind ("Carrow Road") and maybe a direction ("S", "North"),
            # the rest of the line (a town, a state and ZIP code) is the locality's
            words = list(re.finditer(r"\S+", street))
            kinds = [i for i, w in enumerate(words) if w[0].strip(".,").lower() in _TYPE_AFTER and i]
            if kinds:
                last = kinds[-1]
                after = words[last + 1:last + 3]
                if after and re.fullmatch(rf"{_DIRECTIONS}\.?|\d{{1,4}}", after[0][0]):
                    last += 1
                end = match.start("street") + words[last].end()
            if (not street[0].isupper() and not street[0].isdigit() and not typed
                    or not typed and is_premises(line[match.start("street"):end])):  # "8 Riverside Shopping Centre"
                return None
        elif (len(re.match(r"\d+", match["number"])[0]) > 4  # "Nummer ist 04321 98765"
              or not street[0].isupper() and street.split()[0].strip(".").lower() not in _TYPE_BEFORE
              or not street.split()[-1][0].isupper() and not typed):
            return None
        return end, typed, pattern is _NAME_FIRST
    street = re.match(rf"{_WORD}(?:[ \t]+{_WORD}){{0,4}}", line)
    if below_unit and street is not None and street[0][0].isupper() and _typed(street[0]):
        return street.end(), True, False
    return None


_LINE_START = re.compile(r"[ \t]*(?:[-*•>][ \t]+)?(?:[^\W\d_][\w.'’-]*(?:[ \t]+[^\W\d_][\w.'’-]*){0,2}"
                         r"[ \t]*:[ \t]+)?")  # an indent, a bullet, a form's caption ("Address: ")


def _parts_after(text: str, start: int, end: int) -> tuple[int, list[str]]:
    """From `start` to `end`, the comma-separated parts (or, after a street whose locality has no
    comma before it, the rest) an address takes: where they end, and their kinds. They stop at
    the first part that is no address's, and the country."""
    kinds, reached, at = [], start, start
    while at < end:
        comma = text.find(",", at, end)
        stop = end if comma < 0 else comma
        part = text[at:stop]
        kind = _kind(part)
        if kind is None or kind == "country":
            break
        kinds.append(kind)
        reached = at + len(part.rstrip().rstrip("."))
        at = stop + 1
        while at < end and text[at] in " \t":
            at += 1
    return reached, kinds


def _nothing_but_a_country(rest: str) -> bool:
    rest = rest.strip(" \t.,")
    return not rest or is_country(rest)


def _street_on_line(text: str, line_start: int, line_end: int) -> tuple[int, int, bool, bool] | None:
    """The street a line begins with (after an indent, a bullet or a caption), maybe after a unit
    ("Level 4 2 Christopher Lane"): its start and end, whether it is named a street and whether
    its number ends it; None where the line begins with no street."""
    start = _LINE_START.match(text, line_start, line_end).end()
    unit = _UNIT_FIRST.match(text, start, line_end)
    street = None if unit is None else _street(text[unit.end():line_end])
    if street is not None:
        return start, unit.end() + street[0], street[1], street[2]
    street = _street(text[start:line_end], below_unit=_unit_above(text, start) < start)
    return None if street is None else (start, start + street[0], street[1], street[2])


def _rest_of_line(text: str, end: int, line_end: int, numbered_last: bool) -> tuple[int, list[str]] | None:
    """The locality on a street's line after it ("..., Norwich NR1 1HS", "... SPOKANE WA 99201"):
    where it ends and its parts' kinds; None where the line goes on with words no address has
    (a sentence, a list: an address in prose is the model's to judge)."""
    rest = end + len(text[end:line_end]) - len(text[end:line_end].lstrip(" \t,"))
    if rest == line_end:
        return end, []
    reached, kinds = _parts_after(text, rest, line_end)
    if not kinds or not _nothing_but_a_country(text[reached:line_end]):
        return None
    if numbered_last and "," not in text[end:rest] and not (
            kinds[0] == "unit" or kinds[0] == "postcode" and text[rest].isdigit()):
        return None  # "Friends of the Library 120 Elm Avenue": a number ends such a street
    return reached, kinds


def _lines_below(text: str, line_end: int, kinds: list[str]) -> tuple[int | None, list[str]]:
    """The lines below a street line that go on with its address (units, places, and last the
    postcode's line): where they end (None: no line does) and their parts' kinds."""
    end, below, at = None, [], line_end + 1
    while at < len(text) and "postcode" not in kinds + below and len(below) < 4:
        next_end = _line_end(text, at)
        first = at + len(text[at:next_end]) - len(text[at:next_end].lstrip())
        reached, line_kinds = _parts_after(text, first, next_end)
        if not line_kinds or not _nothing_but_a_country(text[reached:next_end]):
            break
        below += line_kinds
        end, at = reached, next_end + 1
    return end, below


def _stands_alone(text: str, end: int) -> bool:
    """Whether nothing but a country line follows an address that ends at `end`, up to a blank
    line or the text's end."""
    rest_of_line, *below = text[end:].split("\n")
    for line in below:
        if not line.strip():
            break
        if not _nothing_but_a_country(line):
            return False
    return _nothing_but_a_country(rest_of_line)


def _block(text: str, line_start: int) -> tuple[int, int, list[str], bool] | None:
    """An address beginning on the line at `line_start`: its start and end, the kinds of its parts
    and lines after the street, and whether the street is named a street; None if the line
    begins with no street or goes on with words no address has."""
    line_end = _line_end(text, line_start)
    if line_end - line_start > LONGEST_LINE:
        return None
    street = _street_on_line(text, line_start, line_end)
    if street is None:
        return None
    start, end, typed, numbered_last = street
    rest = _rest_of_line(text, end, line_end, numbered_last)
    if rest is None:
        return None
    end, kinds = rest
    below_end, below = _lines_below(text, line_end, kinds)  # the line's rest is empty or a country
    return start, below_end or end, kinds + below, typed


def _year_coded(block: str) -> bool:
    """Whether a block's only postcodes could be years ("Release 3\n2024 Roadmap"): a street
    not named a street needs a postcode no year could be."""
    codes = re.findall(r"(?<![\w-])\d{4,5}(?![\w-])", block.split("\n", 1)[-1])
    return bool(codes) and all(re.fullmatch(r"(?:19|20)\d\d", code) for code in codes)


def line_above(text: str, start: int) -> tuple[int, str]:
    """The line right above the one `start` is on, and where it starts, where `start` begins its
    line; else (`start`, "")."""
    line_start = text.rfind("\n", 0, start) + 1
    if not line_start or text[line_start:start].strip():
        return start, ""
    above_start = text.rfind("\n", 0, line_start - 1) + 1
    return above_start, text[above_start:line_start - 1]


def _unit_above(text: str, start: int) -> int:
    """Where an address beginning at `start` begins with the unit or building line right above
    it ("Flat 3\\n41 Gloucester Place"); `start` where there is none."""
    above_start, above = line_above(text, start)
    unit = above.strip()
    return above_start + above.index(unit) if unit and _UNIT.fullmatch(unit) else start


def postal_addresses(text: str) -> list[Span]:
    """The address blocks and lines of a text that have an address's whole shape: a street line
    with a house number and, below it or after a comma, a locality with a postcode, or a street
    named a street (`_typed`) and a town with nothing after them; each from its street (or the
    unit line above it) through its locality, without a country line, as STREET_ADDRESS."""
    found, at = [], 0
    while at < len(text):
        line_end = _line_end(text, at)
        block = _block(text, at)
        if block is not None:
            start, end, kinds, typed = block
            postcode = "postcode" in kinds and (typed or not _year_coded(text[start:end]))
            if postcode or typed and "place" in kinds and _stands_alone(text, end):
                found.append((_unit_above(text, start), end, "STREET_ADDRESS"))
                line_end = max(line_end, _line_end(text, end))
        at = line_end + 1
    return found
