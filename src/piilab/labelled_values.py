"""Values a label right before them names: phone numbers after a phone label, identity numbers
after an identity label.

"Tel.: +49 30 9018 2245", "call me on 0161 496 0753", "Kundennummer: K-4410938", "NHS number: 485
777 3456", "mi CUIL 20-31456789-3": the label says what the value is, whatever its shape, and only
the label does (a number's digits do not say whose they are, nor whether it rings). `complete`
adds what the model missed after such labels, and `check` relabels an identity number the model
read as something else (an NHS number as a phone number) and drops a "name" that is an identity
label itself ("Steuernummer").

Identity labels name personal identifiers in the languages piilab's dev set is written in:
national, tax, social security, health and passport numbers, and customers', members',
patients', students' and employees' numbers. A business's own references (an order's, an
invoice's) are not among them, and a generic word ("account", "customer", "ID") counts only with
its "number" ("Account no.:", "customer number", "ID number"), since "account: 2" or "ID 2024"
say nothing of a person.
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.data.validators import NUMERIC_DATE, is_id_number, is_personal_phone

# In prose a label may be said: "my phone number is", "Meine Telefonnummer ist", "mi cédula es".
_SAID = r"[ \t]+(?:is|ist|est|es|è|é|är|er|jest)"

# A phone number's own label right before it: "Tel.:", "Mobile no.:", "Fax (home):", "Тел.:", a
# vCard's "TEL;TYPE=cell:", a signature's "M:", a sentence's "my phone number is". Only then does
# a number's context say it is a phone line. A bare label with no colon counts only where it
# begins its line ("Mobile 0171 ..."), not inside prose ("Mobile 2020-2024 roadmap", the journal
# "Cell 2004 117(6) 789-802").
_PHONE_WORDS = (r"(?:tel|telephone|phone|ph|mobile|mob|cell|cellphone|fax|handy|mobil|telefon|"
                r"telefonnummer|tél|téléphone|portable|móvil|movil|teléfono|telefone|telemóvel|"
                r"celular|telefono|cellulare|gsm|тел|телефон|電話)\.?"
                r"(?:[ \t]*(?:number|no|nr|n°|nº|#)\.?)?(?:[ \t]*\([^()\n]{1,20}\))?")
# A number called a phone's without a phone word: "my number is", "m'n nummer is", "su número es"
# (a possessive before it, so an order's number is not one), or asked to be called: "call me on",
# "chiamami al", "joignable au". After "is", an article may stand: "Mi móvil es el 612 ...".
_MY = r"(?:my|mi|su|mon|ma|meine|mein|m'n|mijn|il[ \t]+mio|o[ \t]+meu|mój|benim)"
_NUMBER_WORD = r"(?:number|nummer|número|numero|numéro)"
_CALL_ME = (r"(?:(?:call|ring|text|reach|phone|whatsapp)[ \t]+me[ \t]+(?:at|on)|chiamami[ \t]+al|"
            r"llámame[ \t]+al|appelle[ \t-]*moi[ \t]+au|joignable[ \t]+au|"
            r"ruf[ \t]+mich[ \t]+an(?:[ \t]+unter)?|bel[ \t]+me[ \t]+op)")
_SAID_PHONE = rf"{_SAID}[ \t]*:?(?:[ \t]+(?:el|le|il|o|the))?"
_PHONE_LABEL = re.compile(
    rf"(?im)(?:^[ \t]*{_PHONE_WORDS}[ \t]*[:.]?|(?<![\w-]){_PHONE_WORDS}(?:[ \t]*[:.]|{_SAID_PHONE})|"
    rf"(?<![\w-]){_MY}[ \t]+{_NUMBER_WORD}{_SAID_PHONE}|(?<![\w-]){_CALL_ME}|"
    r"^(?:item\d+\.)?tel(?:;[^:\n]*)?:|^[MPTF][ \t]*:)[ \t]*"
    r"(?P<number>\+?[\d(][\d \t().\-/]{5,}\d(?:[ \t]*(?:x|ext\.?)[ \t]*\d{1,5})?)")
# What a number after such a label may begin with instead: a year range, a date, an IP address.
_NOT_A_PHONE = re.compile(rf"(?:(?:19|20)\d{{2}}[ \t]*[-–/][ \t]*(?:19|20)?\d{{2}}|{NUMERIC_DATE}|"
                          r"\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def labelled_phones(text: str) -> list[Span]:
    """Phone numbers written right after a phone label or phrase ("Tel.: +49 30 9018 2245", a
    vCard's "TEL;TYPE=cell:+1-415-937-3419", "call me on 0161 496 0753"), not freephone numbers,
    dates or year ranges, as PHONE_NUM."""
    return [(m.start("number"), m.end("number"), "PHONE_NUM") for m in _PHONE_LABEL.finditer(text)
            if is_personal_phone(m["number"]) and _NOT_A_PHONE.match(m["number"]) is None
            and m["number"].count("(") == m["number"].count(")")]


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
# Words that name a person's number only with a "number" after them (and own a reference:
# "customer ref", piilab.numbers.after_reference_word).
PERSONS_NUMBER_WORDS = (r"account|acct|customer|client|member|membership|patient|policy|student|employee|"
            r"staff|personnel|bond|tax|id|identity|identification|insurance")
_NUMBER = r"(?:number|num|no|nr|n°|nº|#|id)\.?"  # "Student ID", "Member no."
_LABEL = (rf"(?<![\w-])(?:(?i:{_NAMES})(?:[ \t]*(?i:{_NUMBER}))?|(?:{_ABBREVIATIONS})(?:[ \t]*(?i:{_NUMBER}))?"
          rf"|(?i:{PERSONS_NUMBER_WORDS})[ \t]*(?i:{_NUMBER}))")
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
