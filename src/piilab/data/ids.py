"""Identification numbers with valid check digits, for synthetic documents: card numbers (Luhn),
IBANs (mod 97) and national ID shapes (US SSN, UK NI, German Steuer-ID, French NIR, Dutch BSN,
Spanish DNI, Polish PESEL, Swedish personnummer, Brazilian CPF). Each takes a seeded Random."""

from __future__ import annotations

import random
import string

from piilab.data.validators import (
    IBAN_LENGTHS,
    br_cpf_check_digits,
    es_dni_letter,
    iban_check_digits,
    luhn_check_digit,
    pl_pesel_check_digit,
    steuer_id_check_digit,
)

# Card brand -> (prefixes, length). Test-range numbers are avoided on purpose: a model should
# learn the shape, not "4111 1111 1111 1111".
_CARD_BRANDS = {"visa": (("4",), 16), "mastercard": (("51", "52", "53", "54", "55", "2221"), 16),
                "amex": (("34", "37"), 15), "discover": (("6011", "65"), 16)}
# Country -> how its BBAN reads: 'n' a digit, 'a' an upper-case letter, 'c' either.
_BBAN_SHAPES = {
    "DE": "n" * 18, "GB": "aaaa" + "n" * 14, "FR": "n" * 10 + "c" * 11 + "nn", "NL": "aaaa" + "n" * 10,
    "IT": "a" + "n" * 10 + "c" * 12, "ES": "n" * 20, "PL": "n" * 24, "SE": "n" * 20,
    "BR": "n" * 23 + "ac", "DK": "n" * 14, "FI": "n" * 14, "AT": "n" * 16, "CH": "n" * 5 + "c" * 12,
    "BE": "n" * 12, "IE": "aaaa" + "n" * 14, "PT": "n" * 21, "CZ": "n" * 20, "NO": "n" * 11,
    "TR": "n" * 6 + "c" * 16,
}
assert all(len(shape) + 4 == IBAN_LENGTHS[c] for c, shape in _BBAN_SHAPES.items())
_ALNUM = string.ascii_uppercase + string.digits


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def card_number(rng: random.Random) -> str:
    """A Luhn-valid card number of a common brand, written in groups or in one run."""
    prefixes, length = _CARD_BRANDS[rng.choice(tuple(_CARD_BRANDS))]
    payload = rng.choice(prefixes)
    payload += _digits(rng, length - 1 - len(payload))
    number = payload + str(luhn_check_digit(payload))
    groups = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
    sep = rng.choice((" ", " ", "-", ""))
    parts, at = [], 0
    for g in groups:
        parts.append(number[at:at + g])
        at += g
    return sep.join(parts)


def iban(rng: random.Random, country: str) -> str:
    """A mod-97-valid IBAN for `country` (DE if unknown), in print groups of four or in one run."""
    country = country if country in _BBAN_SHAPES else "DE"
    pools = {"n": string.digits, "a": string.ascii_uppercase, "c": _ALNUM}
    bban = "".join(rng.choice(pools[kind]) for kind in _BBAN_SHAPES[country])
    value = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.6:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value


def us_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def uk_nino(rng: random.Random) -> str:
    while True:
        prefix = rng.choice("ABCEGHJKLMNOPRSTWXYZ") + rng.choice("ABCEGHJKLMNPRSTWXYZ")
        if prefix not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
            break
    body = _digits(rng, 6)
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix} {body[:2]} {body[2:4]} {body[4:]} {suffix}"
    return f"{prefix}{body}{suffix}"


def de_steuer_id(rng: random.Random) -> str:
    # Ten digits from nine distinct ones, one of them twice; no leading zero.
    while True:
        chosen = rng.sample(string.digits, 9)
        payload = chosen + [rng.choice(chosen)]
        rng.shuffle(payload)
        if payload[0] != "0":
            break
    payload_text = "".join(payload)
    number = payload_text + str(steuer_id_check_digit(payload_text))
    return number if rng.random() < 0.6 else f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}"


def fr_nir(rng: random.Random) -> str:
    head = f"{rng.choice('12')}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}" \
           f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    key = 97 - int(head) % 97
    if rng.random() < 0.5:
        return f"{head[0]} {head[1:3]} {head[3:5]} {head[5:7]} {head[7:10]} {head[10:13]} {key:02d}"
    return f"{head}{key:02d}"


def nl_bsn(rng: random.Random) -> str:
    while True:
        first = _digits(rng, 8)
        rest = sum(int(d) * w for d, w in zip(first, range(9, 1, -1))) % 11
        if rest < 10:  # the 11-test makes the last digit this remainder; 10 has no digit
            number = first + str(rest)
            return number if rng.random() < 0.7 else f"{number[:4]}.{number[4:6]}.{number[6:]}"


def es_dni(rng: random.Random) -> str:
    number = rng.randint(10_000_000, 99_999_999)
    return f"{number}{'-' if rng.random() < 0.3 else ''}{es_dni_letter(number)}"


def pl_pesel(rng: random.Random) -> str:
    payload = f"{rng.randint(50, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{_digits(rng, 4)}"
    return payload + str(pl_pesel_check_digit(payload))


def se_personnummer(rng: random.Random) -> str:
    date = f"{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    serial = _digits(rng, 3)
    return f"{date}-{serial}{luhn_check_digit(date + serial)}"


def br_cpf(rng: random.Random) -> str:
    payload = _digits(rng, 9)
    number = payload + br_cpf_check_digits(payload)
    return f"{number[:3]}.{number[3:6]}.{number[6:9]}-{number[9:]}" if rng.random() < 0.7 else number


# National ID kind -> generator; the kinds match validators.NATIONAL_ID_VALIDATORS.
NATIONAL_IDS = {
    "us_ssn": us_ssn, "uk_nino": uk_nino, "de_steuer_id": de_steuer_id, "fr_nir": fr_nir,
    "nl_bsn": nl_bsn, "es_dni": es_dni, "pl_pesel": pl_pesel, "se_personnummer": se_personnummer,
    "br_cpf": br_cpf,
}
