"""HL7 v2 messages read by their fields: a patient's and the patient's relatives' identifiers.

An HL7 v2 message is a list of segments, one per line ("PID|1||4455667^^^HOSP^MR||Doe^John^A|..."):
fields split by "|", a field's repetitions by "~" and its components by "^" (the MSH segment's
first characters name other separators where a sender chose them). The standard defines what
each field holds, so a field, not its shape, says what a value is: PID-5 is the patient's name
written "family^given^middle", PID-11 the patient's address "street^other^city^state^postcode^
country", PID-19 the social security number. A model trained on prose finds almost none of them
(docs/evaluation.md, "The third held-out test set, measured once").

What is read is what HIPAA's Safe Harbor method lists as identifiers of the individual and of
relatives and household members (45 CFR 164.514(b)(2)): the patient's names, addresses, phone
numbers and identifiers (PID, and MRG's prior ones), the next of kin's (NK1), the guarantor's
(GT1) and the insured's (IN1). Clinicians, facilities, insurers and employers are not read.
How each field's value is cut:
- a name is its family, given and further given names, "Miller^Paul^One" (its suffix, prefix and
  degree components are titles, outside it, as piilab's NAME has them);
- an address runs from its street through city, state and postcode, "555 Flower
  Street^^Aurora^CO^80011", without its country component (as STREET_ADDRESS has it), and only
  where it has a street;
- a phone number is its first component where that is written ("(303)554-9936"), else its
  country code, area code, number and extension components, "303^5549936"; its e-mail
  component is an EMAIL;
- an identifier is its first component (the ID of "4455667^^^HOSP^MR"), or the whole field for
  a bare number (PID-19's "123-45-6789"), with four digits at least (`is_id_number`).
A text is read as HL7 only where a line begins with a segment's name and the field separator.
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.data.validators import is_id_number, is_personal_email

# (segment, field number) -> how its value is read, by the standard's field definitions (v2.5).
FIELDS = {
    ("PID", 2): "id", ("PID", 3): "id", ("PID", 4): "id", ("PID", 5): "name", ("PID", 6): "name",
    ("PID", 9): "name", ("PID", 11): "address", ("PID", 13): "phone", ("PID", 14): "phone",
    ("PID", 18): "id", ("PID", 19): "number", ("PID", 20): "id", ("PID", 21): "id",
    ("MRG", 1): "id", ("MRG", 2): "id", ("MRG", 3): "id", ("MRG", 7): "name",
    ("NK1", 2): "name", ("NK1", 4): "address", ("NK1", 5): "phone", ("NK1", 6): "phone",
    ("NK1", 30): "name", ("NK1", 31): "phone", ("NK1", 32): "address", ("NK1", 33): "id",
    ("NK1", 37): "number",
    ("GT1", 2): "id", ("GT1", 3): "name", ("GT1", 4): "name", ("GT1", 5): "address",
    ("GT1", 6): "phone", ("GT1", 7): "phone", ("GT1", 12): "number",
    ("IN1", 16): "name", ("IN1", 19): "address", ("IN1", 36): "number", ("IN1", 49): "id",
}
_SEGMENTS = frozenset(segment for segment, _ in FIELDS)
_MSH = re.compile(r"(?m)^MSH(?P<fields>[^\w\s])(?P<components>[^\w\s])(?P<repeats>[^\w\s])")
_LINE = re.compile(r"[^\r\n]+")
NAME_PARTS = 3  # family, given, further given names; then suffix, prefix, degree
ADDRESS_PARTS = 5  # street, other designation, city, state, postcode; then country
PHONE_DIGITS = 7  # fewer is an extension or a code, not a number to dial


def _parts(text: str, start: int, end: int, separator: str) -> list[tuple[int, int]]:
    """The (start, end) of each part of text[start:end] between `separator`s."""
    bounds, at = [], start
    while True:
        cut = text.find(separator, at, end)
        if cut < 0:
            return bounds + [(at, end)]
        bounds.append((at, cut))
        at = cut + 1


def _filled(components: list[tuple[int, int]], first: int, last: int) -> tuple[int, int] | None:
    """From the first to the last non-empty component among components[first:last]; None if all
    are empty."""
    filled = [c for c in components[first:last] if c[1] > c[0]]
    return (filled[0][0], filled[-1][1]) if filled else None


def _value(text: str, kind: str, components: list[tuple[int, int]]) -> list[Span]:
    """The spans one repetition of a field of `kind` holds."""
    def part(n):
        return text[slice(*components[n])] if n < len(components) else ""
    if kind == "name":
        where = _filled(components, 0, NAME_PARTS)
        return [(*where, "NAME")] if where and any(c.isalpha() for c in text[slice(*where)]) else []
    if kind == "address":
        where = _filled(components, 0, ADDRESS_PARTS)
        return [(*where, "STREET_ADDRESS")] if where and part(0).strip() else []
    if kind == "phone":
        where = components[0] if part(0).strip() else _filled(components, 4, 8)
        dialled = where and sum(c.isdigit() for c in text[slice(*where)]) >= PHONE_DIGITS
        mail = [(*components[3], "EMAIL")] if is_personal_email(part(3)) else []
        return sorted(([(*where, "PHONE_NUM")] if dialled else []) + mail)
    where = components[0] if kind == "id" else (components[0][0], components[-1][1])
    return [(*where, "ID_NUM")] if is_id_number(text[slice(*where)]) else []


def hl7_values(text: str) -> list[Span]:
    """The names, addresses, phone numbers, e-mail addresses and identifiers in an HL7 v2
    message's patient, merge, next-of-kin, guarantor and insurance segments, labelled by their
    fields (FIELDS); none where the text holds no such segment."""
    header = _MSH.search(text)
    fields, components, repeats = (header.group("fields", "components", "repeats") if header
                                   else ("|", "^", "~"))
    spans = []
    for line in _LINE.finditer(text):
        segment = line.group()[:3]
        if segment not in _SEGMENTS or line.group()[3:4] != fields:
            continue
        for number, (start, end) in enumerate(_parts(text, line.start(), line.end(), fields)):
            kind = FIELDS.get((segment, number))
            if kind is None or end == start:
                continue
            for rep_start, rep_end in _parts(text, start, end, repeats):
                spans += _value(text, kind, _parts(text, rep_start, rep_end, components))
    return spans
