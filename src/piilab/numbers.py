"""Numbers found by their own shape, and the words before a number that say whose it is.

A card number's Luhn checksum, an IBAN's check digits, a national number's written shape with
its check digits ("123-45-6789", "000.000.000-00") and a phone number's North American or "+"
country-code shape say what a number is without the model. What they cannot say is whose it is:
a business's reference word right before a number ("Order #", "Rechnung Nr.") makes it the
business's (`after_reference_word`), unless a person's word owns the reference ("customer ref"),
and a person's word before an issue-shaped "#48291733" ("MRN", "member no.") makes it a
person's (`persons_number`). piilab.shapes uses both halves: `complete` and `phones` add these
numbers, `check` drops the model's numbers after a reference word.
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.data.validators import (br_cpf_valid, ch_ahv_valid, es_dni_valid, fr_nir_valid, iban_valid,
                                   is_personal_phone, is_us_ssn, luhn_valid, uk_nino_valid)
from piilab.labelled_values import PERSONS_NUMBER_WORDS

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


# Words that name a number as a business's reference, not a person's ("Order 123-45-6789",
# "Rechnung Nr. 4111 ..."), right before it on its line: `complete` adds no number after them.
_REFERENCE_BEFORE = re.compile(
    r"(?i)(?<![\w-])(?:order|invoice|ticket|booking|tracking|shipment|parcel|serial|case|ref|"
    r"reference|confirmation|reservation|transaction|receipt|bestellung|bestell|rechnung|auftrag|"
    r"sendung|commande|facture|pedido|factura|reserva|ordine|fattura|bestelling|factuur)"
    r"(?:[ \t]*(?:number|num|nr|no|n°|nº|#)\.?)?[ \t]*[:#.-]?[ \t]*$")


REFERENCE_REACH = 24  # how far before a number the word naming it a reference may begin
_OWNER_BEFORE = re.compile(rf"(?i)(?<![\w-])(?:{PERSONS_NUMBER_WORDS})[ \t]+$")  # "customer ref"


# Words that name a number as a person's, right before it: "MRN #48291733", "Member no. #5521".
_PERSONS_NUMBER_BEFORE = re.compile(
    r"(?i)(?<![\w-])(?:mrn|patient|member|membership|account|acct|customer|client|employee|staff|"
    r"student|badge|policy|passport|licen[cs]e|id|ssn|nhs|insurance|medicare|tax)(?:[ \t]*(?:number|num|nr|no|id)\.?)?[ \t]*[:.-]?[ \t]*$")


def persons_number(text: str, span: Span) -> bool:
    """Whether an ID_NUM span written "#48291733" (an issue's or a ticket's shape, which
    `is_id_number` refuses) follows a word naming it a person's ("MRN", "member no.")."""
    start, end, _ = span
    return (re.fullmatch(r"#\d+", text[start:end]) is not None
            and _PERSONS_NUMBER_BEFORE.search(text, max(0, start - REFERENCE_REACH), start) is not None)


def after_reference_word(text: str, start: int) -> bool:
    """Whether a number at `start` follows a word that names it a business's reference
    ("Order #", "invoice no.", "Rechnung Nr."), on its line and within REFERENCE_REACH characters;
    not where a person's word owns the reference ("customer ref")."""
    found = _REFERENCE_BEFORE.search(text, max(0, start - REFERENCE_REACH), start)
    return found is not None and _OWNER_BEFORE.search(text, max(0, found.start() - 12), found.start()) is None


# Phone numbers in the two shapes that say "phone" without a label: North America's, its area
# code set apart ("(415) 666-7777", "415-666-7777", "415.666.7777", "+1 650 253 4561"), and a
# number led by its "+" country code in groups ("+44 20 7946 0958"). Other digit groups ("033316005",
# "650 253 4561") may be anything; a label decides them (`labelled_phones`) or the model does.
_NANP_PHONE = (r"(?:\+1[ .-]?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}"
               r"|(?:1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[.-])\d{3}[.-]\d{4})")
_PLUS_PHONE = r"\+[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?[ .-]?\d{1,6}(?:[ .-]\d{1,6}){1,5}"
_UNLABELLED_PHONE = re.compile(rf"(?<![\w+.\-/(])(?:{_NANP_PHONE}|{_PLUS_PHONE})(?![\w-]|[.,/:]\d)")
LEAST_PLUS_DIGITS = 9  # "+" and fewer digits is a sum or an offset more often than a phone


def unlabelled_phones(text: str) -> list[Span]:
    """Phone numbers written with no label, in North America's shape or led by a "+" country
    code (at least LEAST_PLUS_DIGITS digits), as PHONE_NUM; not freephone numbers, and none right
    after a word naming a business's reference ("Order 415-555-0199")."""
    found = []
    for m in _UNLABELLED_PHONE.finditer(text):
        value = m.group()
        plus_led = value.startswith("+") and not value.startswith("+1")
        if plus_led and sum(c.isdigit() for c in value) < LEAST_PLUS_DIGITS:
            continue
        if is_personal_phone(value) and not after_reference_word(text, m.start()):
            found.append((m.start(), m.end(), "PHONE_NUM"))
    return found


def national_ids(text: str) -> list[Span]:
    """US social security, Brazilian CPF (written 000.000.000-00), Spanish DNI, French NIR, UK
    National Insurance and Swiss AHV numbers whose check digits (or groups) hold, as ID_NUM."""
    return [(m.start(), m.end(), "ID_NUM") for pattern, valid in _NATIONAL_IDS
            for m in pattern.finditer(text) if valid(m.group())]


def is_national_id(value: str) -> bool:
    """Whether the whole value is one of `national_ids`' numbers."""
    return any(pattern.fullmatch(value) and valid(value) for pattern, valid in _NATIONAL_IDS)
