"""Identity numbers written right after a label that names them a person's.

"Kundennummer: K-4410938", "Codice fiscale: RMNFNC90A41A944P", "NHS number: 485 777 3456",
"mi CUIL 20-31456789-3": the label says what the number is, whatever its shape, and only the
label does (a number's digits do not say whose they are). So, as a phone label decides a phone
number (piilab.shapes.labelled_phones), an identity label right before a value decides an
ID_NUM: `complete` adds the ones the model missed, and `check` relabels a value the model read
as something else (an NHS number as a phone number). The labels are the names of personal
identifiers in the languages piilab's dev set is written in: national, tax, social security,
health and passport numbers, and customers', members', patients', students' and employees'
numbers. A business's own references (an order's, an invoice's) are not among them, and a
generic word ("account", "customer", "ID") counts only with its "number" ("Account no.:",
"customer number", "ID number"), since "account: 2" or "ID 2024" say nothing of a person.
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.data.validators import is_id_number

# Names that mean a person's identifier by themselves (any case): "Steuernummer", "passport",
# "codice fiscale", "n° de sécurité sociale"; a "number" after them is optional.
_NAMES = (
    r"social[ \t]+security|social[ \t]+insurance|national[ \t]+insurance|passport|"
    r"driver'?s[ \t]+licen[cs]e|driving[ \t]+licen[cs]e|taxpayer[ \t]+id|tax[ \t]+file|"
    r"medicare|national[ \t]+id(?:entity)?|identity[ \t]+card|id[ \t]+card|"
    r"kundennummer|kundennr|steuernummer|steuer-id|steueridentifikationsnummer|"
    r"sozialversicherungsnummer|versicherungsnummer|personalausweisnummer|ausweisnummer|"
    r"reisepassnummer|passnummer|mitgliedsnummer|kontonummer|personalnummer|matrikelnummer|"
    r"patientennummer|burgerservicenummer|klantnummer|lidnummer|personnummer|fødselsnummer|"
    r"henkilötunnus|codice[ \t]+fiscale|tessera[ \t]+sanitaria|"
    r"(?:numéro|n°|nº|no\.?)[ \t]+(?:de[ \t]+)?(?:sécurité[ \t]+sociale|passeport|client|"
    r"d'adhérent|fiscal)|numéro[ \t]+fiscal|"
    r"número[ \t]+de[ \t]+(?:cliente|pasaporte|seguridad[ \t]+social|contribuinte|utente)|"
    r"cédula(?:[ \t]+de[ \t]+(?:identidad|ciudadanía))?|código[ \t]+de[ \t]+estudiante|"
    r"cartão[ \t]+de[ \t]+cidadão|kimlik(?:[ \t]+numarası)?|aadhaar"
)
# Abbreviations, matched in capitals only ("sin" and "nie" are words in Spanish and German).
_ABBREVIATIONS = r"SSN|SIN|NINO|NHS|PPSN|PPS|DNI|NIE|NIF|CUIL|CUIT|RUT|CURP|BSN|PESEL|CPR|CPF|NIR|MRN|HKID|NRIC"
# Words that name a person's number only with a "number" after them.
_GENERIC = (r"account|acct|customer|client|member|membership|patient|policy|student|employee|"
            r"staff|personnel|bond|tax|id|identity|identification|insurance")
_NUMBER = r"(?:number|num|no|nr|n°|nº|#|id)\.?"  # "Student ID", "Member no."
_SAID = r"[ \t]+(?:is|ist|est|es|è|é|är|er|jest)"  # "my NIF is", "mi cédula es"
_LABEL = (rf"(?<![\w-])(?:(?i:{_NAMES})(?:[ \t]*(?i:{_NUMBER}))?|(?:{_ABBREVIATIONS})(?:[ \t]*(?i:{_NUMBER}))?"
          rf"|(?i:{_GENERIC})[ \t]*(?i:{_NUMBER}))")
# The value: capitals and digits, in groups joined by "-", "." or "/" (or a space before digits):
# "K-4410938", "1.020.456.789", "1 85 05 78 006 084 36", "1234567TA"; `is_id_number` then
# refuses dates, codes and numbers of fewer than four digits.
_VALUE = r"(?P<value>[A-Z0-9](?:[A-Z0-9]|[-./](?=[A-Z0-9])|[ \t](?=\d))*[A-Z0-9])(?![\w@])"
_LABELLED_ID = re.compile(rf"{_LABEL}(?:[ \t]*[:#][ \t]*|{_SAID}[ \t]*:?[ \t]*|[ \t]*\([ \t]*|[ \t]+){_VALUE}")


_LABEL_ALONE = re.compile(_LABEL)


def is_identity_label(value: str) -> bool:
    """Whether `value` is an identity label itself ("Steuernummer", "NIF"): a caption, never a
    name."""
    return _LABEL_ALONE.fullmatch(value) is not None


def labelled_ids(text: str) -> list[Span]:
    """Identity numbers written right after a label naming them a person's ("PPSN: 1234567TA",
    "BSN (111222333)", "mi cédula es 1.020.456.789"), as ID_NUM."""
    found = []
    for m in _LABELLED_ID.finditer(text):
        value = m.group("value")
        if is_id_number(value):
            found.append((m.start("value"), m.end("value"), "ID_NUM"))
    return found
