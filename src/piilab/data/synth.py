"""Synthetic PII documents from hand-written templates filled with Faker values.

Spans are exact by construction: the text is assembled piece by piece and each PII value's
offsets are recorded as it is appended. Every document carries `meta["template_id"]`, so a split
can hold whole templates out, and `meta["hard_negatives"]`: values that look like PII but are
not by the label definitions (a cited author, an instructor, a public URL, an order number).
Passages are short (mostly 15-70 words) so a small model can be tuned on them on a CPU.
Same seed, same documents (for one Faker version; pyproject pins the major version).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import yaml

from piilab.data.people import personal_phone, slug
from piilab.data.records import Document, Span
from piilab.errors import PiilabError

SOURCE = "synthetic"
DEFAULT_LOCALES = ("en_US", "en_GB", "en_IN", "de_DE", "fr_FR", "es_ES")
GENRES = ("essay", "email", "chat", "form", "social")

# Template id -> text, from templates.yaml beside this file (its header says how a template reads).
TEMPLATES: dict[str, str] = yaml.safe_load(
    resources.files("piilab.data").joinpath("templates.yaml").read_text(encoding="utf-8"))

_AUTHORS = (
    "Carol Dweck", "Malcolm Gladwell", "Daniel Kahneman", "Angela Duckworth", "Brené Brown",
    "Yuval Noah Harari", "Tim Brown", "Don Norman", "Ken Robinson", "Howard Gardner",
    "Jean Piaget", "Lev Vygotsky", "Maria Montessori", "John Dewey", "Paulo Freire",
    "Simon Sinek", "Adam Grant", "Cal Newport", "James Clear", "Edward de Bono",
)
_BOOKS = ("Mindset", "Outliers", "Thinking, Fast and Slow", "Grit", "Atomic Habits", "Deep Work",
          "Sapiens", "Change by Design", "The Design of Everyday Things", "Start with Why")
_TOPICS = ("design thinking", "climate change", "renewable energy", "online learning", "teamwork",
           "storytelling", "data visualization", "public health", "urban gardening", "time management",
           "machine learning", "recycling", "mental health", "space exploration", "local history")
_COURSES = ("Design Thinking 101", "Introduction to Psychology", "Academic Writing", "Biology II",
            "Project Management", "Statistics for Beginners", "World History", "Creative Problem Solving")
_PRODUCTS = ("wireless headphones", "coffee grinder", "laptop stand", "running shoes", "desk lamp",
             "phone case", "backpack", "smart watch", "blender", "e-reader")
_PUBLIC_URLS = (
    "https://en.wikipedia.org/wiki/Design_thinking", "https://www.khanacademy.org",
    "https://www.bbc.co.uk/news", "https://www.nasa.gov", "https://docs.python.org/3/",
    "https://www.coursera.org/learn/learning-how-to-learn", "https://www.who.int/health-topics",
    "https://www.ted.com/talks", "https://www.gov.uk/apply-renew-passport", "https://www.un.org/en/",
    "https://www.nationalgeographic.com", "https://www.ikea.com/help",
)
_HASHTAGS = ("motivation", "weekend", "goals", "studygram", "fitness", "travel", "tech", "learning")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_TITLES = ("Professor", "Dr.", "Mr.", "Ms.", "Mrs.")
_MAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "proton.me", "icloud.com",
                 "web.de", "gmx.net", "orange.fr", "libero.it", "student.university.edu")

# Slot -> label for the slots that are PII; every other slot is filler or a hard negative.
_PII_SLOTS: dict[str, str] = {
    "name": "NAME", "first": "NAME", "name2": "NAME", "first2": "NAME",
    "email": "EMAIL", "email2": "EMAIL", "email_old": "EMAIL",
    "user": "USERNAME", "url": "URL_PERSONAL", "phone": "PHONE_NUM",
    "student_id": "ID_NUM", "ssn": "ID_NUM", "passport": "ID_NUM", "account": "ID_NUM",
    "address": "STREET_ADDRESS", "address_ml": "STREET_ADDRESS",
}
_NEGATIVE_SLOTS: dict[str, str] = {
    "author": "cited author", "instructor": "instructor", "public_url": "public URL",
    "order": "order number", "ticket": "ticket number", "serial": "serial number",
    "company": "organisation", "city": "place",
}
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass
class SynthConfig:
    """What `synthesize` generates."""

    n: int = 1000
    """Number of documents."""
    seed: int = 0
    """Seed for template choice and Faker values: same seed, same documents."""
    locales: Sequence[str] = DEFAULT_LOCALES
    """Faker locales the people, addresses and phone numbers come from (texts are English)."""
    genres: Sequence[str] = GENRES
    """Which template genres to use."""
    templates: Sequence[str] | None = None
    """Restrict to these template ids (default: all templates of the chosen genres)."""

    def __post_init__(self) -> None:
        if self.n < 0:
            raise PiilabError(f"synthetic document count must be >= 0, got {self.n}")
        unknown = [g for g in self.genres if g not in GENRES]
        if unknown:
            raise PiilabError(f"unknown genre(s) {', '.join(unknown)}; choose from {', '.join(GENRES)}")
        if not self.locales:
            raise PiilabError("at least one Faker locale is needed")


_CHOICE = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")


def _choose(template: str, rng: random.Random) -> str:
    """The template with one alternative of each `[a|b]` choice picked."""
    return _CHOICE.sub(lambda match: rng.choice(match[1].split("|")), template)


@lru_cache(maxsize=4096)
def _parse(template: str) -> list[tuple[str, bool]]:
    """Template text as (literal, False) and (slot name, True) pieces."""
    pieces, at = [], 0
    for match in _SLOT.finditer(template):
        if match.start() > at:
            pieces.append((template[at : match.start()], False))
        pieces.append((match[1], True))
        at = match.end()
    if at < len(template):
        pieces.append((template[at:], False))
    return pieces


class _Locale:
    """One Faker locale, seeded, with its name lists taken out for fast uniform draws."""

    def __init__(self, locale: str, seed: int) -> None:
        from faker import (
            Faker,  # imported here: Faker takes a third of a second to import
        )

        try:
            self.faker = Faker(locale)
        except AttributeError:
            raise PiilabError(f"unknown Faker locale {locale!r}") from None
        self.faker.seed_instance(seed)
        person = next(p for p in self.faker.providers if "person" in type(p).__module__)
        # Faker weighs names by frequency, which is slow (about 60 us a draw for en_US);
        # a uniform draw from the same lists is fast and gives more varied names.
        self.first_names = list(person.first_names)
        self.last_names = list(person.last_names)


@dataclass
class _Person:
    first: str
    last: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


class _Filler:
    """Draws the value of each slot for one document; a slot keeps its value within a document."""

    def __init__(self, rng: random.Random, locale: _Locale) -> None:
        self.rng, self.loc, self.values = rng, locale, {}
        self.a = self._person()
        self.b = self._person()

    def _person(self) -> _Person:
        return _Person(self.rng.choice(self.loc.first_names), self.rng.choice(self.loc.last_names))

    def value(self, slot: str) -> str:
        if slot not in self.values:
            make: Callable[[], str] | None = getattr(self, f"_{slot}", None)
            if make is None:
                raise KeyError(f"template slot {{{slot}}} has no generator")
            self.values[slot] = make().strip()
        return self.values[slot]

    # PII slots -------------------------------------------------------------------------------
    def _name(self) -> str:
        return self.a.name

    def _first(self) -> str:
        return self.a.first

    def _name2(self) -> str:
        return self.b.name

    def _first2(self) -> str:
        return self.b.first

    def _email_for(self, person: _Person) -> str:
        first, last, r = slug(person.first), slug(person.last), self.rng
        local = r.choice((f"{first}.{last}", f"{first[0]}{last}{r.randint(1, 99)}", f"{first}_{last}",
                          f"{last}.{first}{r.randint(70, 99)}", f"{first}{r.randint(100, 999)}"))
        return f"{local}@{r.choice(_MAIL_DOMAINS)}"

    def _email(self) -> str:
        return self._email_for(self.a)

    def _email2(self) -> str:
        return self._email_for(self.b)

    def _email_old(self) -> str:
        old = self._email_for(self.a)
        return old if old != self.value("email") else "old." + old

    def _user(self) -> str:
        first, last, r = slug(self.a.first), slug(self.a.last), self.rng
        return r.choice((f"{first}{last[:1]}{r.randint(1, 99)}", f"{first}_{last}", f"{first[0]}{last}{r.randint(80, 99)}",
                         f"the_real_{first}", f"{last}.{first}", f"{first}{r.choice(('x', 'z', '_'))}{r.randint(1, 9)}"))

    def _url(self) -> str:
        user, r = self.value("user"), self.rng
        first, last = slug(self.a.first), slug(self.a.last)
        return r.choice((f"https://github.com/{user}", f"https://www.linkedin.com/in/{first}-{last}-{r.randint(10, 999)}",
                         f"https://{user.replace('_', '-').replace('.', '-')}.blogspot.com", f"https://www.youtube.com/@{user}",
                         f"https://medium.com/@{user}", f"https://www.{first}{last}.net", f"https://twitter.com/{user}"))

    def _phone(self) -> str:
        return personal_phone(self.loc.faker)

    def _student_id(self) -> str:
        r = self.rng
        return r.choice((str(r.randint(100000, 9999999)), f"S{r.randint(1000000, 9999999)}",
                         f"{r.choice('ABCDEFGHJK')}{r.choice('LMNPRSTUVW')}{r.randint(100000, 999999)}"))

    def _ssn(self) -> str:
        return self.loc.faker.ssn()

    def _passport(self) -> str:
        return self.loc.faker.passport_number()

    def _account(self) -> str:
        return self.loc.faker.iban()

    def _address_lines(self) -> list[str]:
        return [line.strip() for line in self.loc.faker.address().splitlines() if line.strip()]

    def _address(self) -> str:
        return ", ".join(self._address_lines())

    def _address_ml(self) -> str:
        return "\n".join(self._address_lines())

    # Hard negatives and filler ---------------------------------------------------------------
    def _author(self) -> str:
        return self.rng.choice(_AUTHORS)

    def _instructor(self) -> str:
        return f"{self.rng.choice(_TITLES)} {self.rng.choice(self.loc.last_names)}"

    def _public_url(self) -> str:
        return self.rng.choice(_PUBLIC_URLS)

    def _order(self) -> str:
        r = self.rng
        return r.choice((f"#{r.randint(10000, 999999)}", f"ORD-{r.randint(100000, 999999)}",
                         f"{r.randint(100, 999)}-{r.randint(1000000, 9999999)}"))

    def _ticket(self) -> str:
        return self.rng.choice((f"#{self.rng.randint(1000, 99999)}", f"CASE-{self.rng.randint(10000, 99999)}"))

    def _serial(self) -> str:
        return f"SN{self.rng.randint(10, 99)}-{self.rng.randint(100000, 999999)}"

    def _company(self) -> str:
        return self.loc.faker.company()

    def _city(self) -> str:
        return self.loc.faker.city()

    def _country(self) -> str:
        return self.loc.faker.current_country()

    def _topic(self) -> str:
        return self.rng.choice(_TOPICS)

    def _course(self) -> str:
        return self.rng.choice(_COURSES)

    def _product(self) -> str:
        return self.rng.choice(_PRODUCTS)

    def _book(self) -> str:
        return self.rng.choice(_BOOKS)

    def _hashtag(self) -> str:
        return self.rng.choice(_HASHTAGS)

    def _weekday(self) -> str:
        return self.rng.choice(_WEEKDAYS)

    def _time(self) -> str:
        return f"{self.rng.randint(8, 18)}:{self.rng.choice(('00', '15', '30', '45'))}"

    def _date(self) -> str:
        return f"{self.rng.choice(_MONTHS)} {self.rng.randint(1, 28)}, {self.rng.randint(2022, 2026)}"

    def _amount(self) -> str:
        return f"{self.rng.randint(10, 2500)}.{self.rng.randint(0, 99):02d} EUR"


def fill(template_id: str, filler: _Filler) -> tuple[str, list[Span], list[dict[str, str]]]:
    """A template's text with its PII spans and hard negatives, assembled piece by piece."""
    parts: list[str] = []
    spans: list[Span] = []
    negatives: list[dict[str, str]] = []
    at = 0
    for piece, is_slot in _parse(_choose(TEMPLATES[template_id], filler.rng)):
        value = filler.value(piece) if is_slot else piece
        if is_slot and piece in _PII_SLOTS:
            spans.append(Span(at, at + len(value), _PII_SLOTS[piece], value))
        elif is_slot and piece in _NEGATIVE_SLOTS:
            negatives.append({"value": value, "kind": _NEGATIVE_SLOTS[piece]})
        parts.append(value)
        at += len(value)
    return "".join(parts), spans, negatives


def template_ids(genres: Sequence[str] = GENRES) -> list[str]:
    """The ids of the templates of the given genres."""
    return [tid for tid in TEMPLATES if tid.split("-")[0] in genres]


def synthesize(config: SynthConfig) -> Iterator[Document]:
    """`config.n` synthetic documents, reproducible from `config.seed`."""
    chosen = list(config.templates) if config.templates is not None else template_ids(config.genres)
    unknown = [t for t in chosen if t not in TEMPLATES]
    if unknown or not chosen:
        raise PiilabError(f"unknown or no template ids: {', '.join(unknown) or '(none)'}")
    rng = random.Random(config.seed)
    locales: dict[str, _Locale] = {}
    for i in range(config.n):
        template_id = rng.choice(chosen)
        locale = rng.choice(list(config.locales))
        if locale not in locales:  # created on first use: each costs ~50 ms
            locales[locale] = _Locale(locale, seed=config.seed * 1009 + len(locales))
        text, spans, negatives = fill(template_id, _Filler(rng, locales[locale]))
        meta = {"template_id": template_id, "genre": template_id.split("-")[0], "locale": locale,
                "hard_negatives": negatives}
        yield Document(f"{SOURCE}:{config.seed}:{i:06d}", text, spans, SOURCE, meta)
