"""People and places for the compositional generator (compose.py): one Faker locale's names,
addresses in that country's format over 1-5 lines, phones and checksummed IDs, and the values
derived from a person (e-mail, username, personal URL) so a document stays consistent."""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from piilab.data import ids
from piilab.data.validators import is_toll_free
from piilab.errors import PiilabError

FRAMES = resources.files("piilab.data").joinpath("frames")


@lru_cache(maxsize=None)
def load_yaml(name: str) -> Any:
    """A data file of frames/ (parsed once)."""
    return yaml.safe_load(FRAMES.joinpath(name).read_text(encoding="utf-8"))


def vocab(key: str) -> list[str]:
    """A word list of frames/vocab.yaml (products, song titles, titles of address, ...)."""
    return load_yaml("vocab.yaml")[key]


def slug(text: str) -> str:
    """ASCII lower-case letters and digits only ('Clémence' -> 'clemence'), for e-mails and URLs."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower()) or "user"


def _fix_list_orders(faker) -> None:
    """Sort every list of strings a Faker provider draws from. Some are built from sets (Faker's
    it_IT cities), so their order, and the value a seed draws, changed with Python's hash seed
    from one process to the next."""
    for provider in faker.providers:
        for name in dir(type(provider)):
            value = getattr(type(provider), name, None)
            if (not name.startswith("_") and isinstance(value, (list, tuple)) and value
                    and all(isinstance(v, str) for v in value)):
                setattr(provider, name, type(value)(sorted(value)))


class Locale:
    """One Faker locale, seeded, with its name lists and its country's address format (locales.yaml)."""

    def __init__(self, code: str, seed: int) -> None:
        from faker import (
            Faker,  # imported here: Faker takes a third of a second to import
        )

        spec = load_yaml("locales.yaml").get(code)
        if spec is None:
            known = ", ".join(load_yaml("locales.yaml"))
            raise PiilabError(f"locale {code!r} has no address format in frames/locales.yaml; choose from {known}")
        self.code, self.spec = code, spec
        self.faker = Faker(code)
        self.faker.seed_instance(seed)
        _fix_list_orders(self.faker)
        person = next(p for p in self.faker.providers if "person" in type(p).__module__)
        # Uniform draws from Faker's lists: fast, and more varied than its frequency weights.
        self.first_names = sorted(set(person.first_names))
        self.last_names = sorted(set(person.last_names))
        if len(self.last_names) < 50:  # pl_PL builds surnames by gender in methods, not a list
            self.last_names = sorted({self.faker.last_name() for _ in range(400)})

    def address_lines(self, rng: random.Random) -> list[str]:
        """Street, an optional unit, the city line(s) of this country, an optional country: 2-5 lines."""
        faker, spec = self.faker, self.spec
        lines = [faker.street_address().strip()]
        if spec.get("units") and rng.random() < 0.25 and "\n" not in lines[0]:
            lines.append(rng.choice(spec["units"]).format(n=rng.randint(1, 40)))
        city_line = re.sub(r"\{(\w+)\}", lambda m: str(getattr(faker, m[1])()), spec["city_line"])
        lines += [line.strip() for line in city_line.split("\n")]
        lines = [line for part in lines for line in part.split("\n") if line.strip()]
        if rng.random() < 0.3 and len(lines) < 5:  # at most five lines, as an envelope holds
            lines.append(spec["country"])
        return lines[:5]


@dataclass
class Person:
    """A person of a document; values are drawn on first use and then kept."""

    first: str
    last: str
    locale: Locale
    values: dict[str, str] = field(default_factory=dict)

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"


def new_person(rng: random.Random, locale: Locale) -> Person:
    first, last = rng.choice(locale.first_names), rng.choice(locale.last_names)
    if rng.random() < 0.05:  # double-barrelled surnames ("Adebayo-Hartmann")
        last = f"{last}-{rng.choice(locale.last_names)}"
    return Person(first, last, locale)


def personal_phone(faker) -> str:
    """A person's number: Faker's, drawn again while it is a freephone number (a business line)."""
    number = faker.phone_number().strip()
    while is_toll_free(number):
        number = faker.phone_number().strip()
    return number


def _email(rng: random.Random, p: Person) -> str:
    first, last = slug(p.first), slug(p.last)
    local = rng.choice((f"{first}.{last}", f"{first[0]}{last}{rng.randint(1, 99)}", f"{first}_{last}",
                        f"{last}.{first}{rng.randint(70, 99)}", f"{first}{rng.randint(100, 999)}",
                        f"{first[0]}.{last}", f"{first}{last[:2]}"))
    return f"{local}@{rng.choice(vocab('mail_domains'))}"


def _user(rng: random.Random, p: Person) -> str:
    first, last = slug(p.first), slug(p.last)
    return rng.choice((f"{first}{last[:1]}{rng.randint(1, 99)}", f"{first}_{last}", f"{first[0]}{last}{rng.randint(80, 99)}",
                       f"{first[:3]}_the_{rng.choice(vocab('user_nouns'))}", f"{last}.{first}",
                       f"{first}{rng.choice(('x', 'z', '_'))}{rng.randint(1, 9)}", f"{rng.choice(vocab('user_nouns'))}_{first}"))


def _url(rng: random.Random, p: Person) -> str:
    user = value(rng, p, "user")
    first, last = slug(p.first), slug(p.last)
    return rng.choice((f"https://github.com/{user}", f"https://www.linkedin.com/in/{first}-{last}-{rng.randint(10, 999)}",
                       f"https://{user.replace('_', '-').replace('.', '-')}.blogspot.com", f"https://www.youtube.com/@{user}",
                       f"https://medium.com/@{user}", f"https://www.{first}{last}.net", f"https://twitter.com/{user}",
                       f"https://{first}{last}.github.io", f"https://www.instagram.com/{user}/"))


def _staff_id(rng: random.Random, p: Person) -> str:
    return rng.choice((str(rng.randint(100000, 9999999)), f"S{rng.randint(1000000, 9999999)}",
                       f"EMP-{rng.randint(10000, 99999)}", f"{rng.choice('ABCDEFGHJK')}{rng.randint(100000, 999999)}"))


def value(rng: random.Random, p: Person, kind: str) -> str:
    """The person's value of one kind (email, user, url, phone, address_lines, card, iban,
    national_id, passport, staff_id), the same each time within a document."""
    if kind not in p.values:
        loc = p.locale
        makers = {
            "email": lambda: _email(rng, p), "user": lambda: _user(rng, p), "url": lambda: _url(rng, p),
            "phone": lambda: personal_phone(loc.faker),
            "address_lines": lambda: "\n".join(loc.address_lines(rng)),
            "card": lambda: ids.card_number(rng),
            "iban": lambda: ids.iban(rng, loc.spec["iban"]),
            # a country without a checksummed kind here gets a passport number (Faker's shape)
            "national_id": lambda: (ids.NATIONAL_IDS[national_id_kind(p)](rng) if national_id_kind(p)
                                    else loc.faker.passport_number()),
            "passport": lambda: loc.faker.passport_number(),
            "staff_id": lambda: _staff_id(rng, p),
        }
        if kind not in makers:
            raise KeyError(kind)
        p.values[kind] = makers[kind]()
    return p.values[kind]


def national_id_kind(p: Person) -> str | None:
    """The national ID kind of a person's country (one of ids.NATIONAL_IDS), None if it has none here."""
    return p.locale.spec.get("national_id")
