"""Synthetic documents composed from many sentence frames per genre (frames/*.yaml): emails with
signatures, transcripts with speaker names, tickets, CVs, forms, invoices, letters, notes, posts,
essays, developers' notes. Spans are exact by construction; frames fall in structure groups that a split can hold out."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from piilab.data import people
from piilab.data.excerpts import excerpt
from piilab.data.people import Locale, Person, load_yaml, new_person, vocab
from piilab.data.records import Document, Span
from piilab.errors import PiilabError

SOURCE = "compose"
GENRES = ("email", "chat", "meeting", "ticket", "cv", "form", "invoice", "letter", "note", "social", "essay",
          "devlog")
DEFAULT_LOCALES = ("en_US", "en_GB", "en_IN", "en_AU", "en_CA", "en_IE", "de_DE", "de_AT", "de_CH", "fr_FR",
                   "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE", "da_DK", "fi_FI", "cs_CZ")
GROUPS = 4
"""Structure groups: frame i of a pool is in group i % GROUPS, and a document uses one group's
frames only, so holding a template id (genre/group) out holds those frames out of training."""
NO_PII_SHARE = 0.25
"""Share of documents tried with PII-free frames only (role speakers, no people); a genre whose
structure group has no PII-free frame for a required part falls back to ordinary frames."""

_SLOT = re.compile(r"\{(?:(\w+)\.)?(\w+)\}")
_CHOICE = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
_PERSON_KEYS = ("a", "b", "c", "d")
# Person field -> label of the value it writes (NAME fields handle their own spans).
_VALUE_FIELDS = {"email": "EMAIL", "user": "USERNAME", "url": "URL_PERSONAL", "phone": "PHONE_NUM",
                 "card": "ID_NUM", "iban": "ID_NUM", "national_id": "ID_NUM", "passport": "ID_NUM",
                 "staff_id": "ID_NUM"}
_NAME_FIELDS = ("name", "first", "last", "titled", "poss", "mention", "NAME", "lower", "user_named",
                "named_user", "address", "address_ml")
_CASUAL = ("chat", "meeting", "social", "note")


@dataclass(frozen=True)
class Section:
    """One part of a genre's layout: `count` frames from `pool` (or that many speaker turns)."""

    pool: str
    count: tuple[int, int]
    sep: str = " "
    end: str = ""
    turns: bool = False


@dataclass(frozen=True)
class Genre:
    name: str
    people: tuple[int, int]
    sections: tuple[Section, ...]
    frames: dict[str, tuple[tuple[str, str], ...]]
    speaker_styles: tuple[str, ...] = ("first",)
    roles: tuple[str, ...] = ("Agent", "Customer")


@lru_cache(maxsize=None)
def load_genre(name: str) -> Genre:
    """A genre's layout and frames from frames/<name>.yaml; frame ids are genre.pool.index."""
    raw = load_yaml(f"{name}.yaml")
    sections = tuple(Section(s["pool"], tuple(s["count"]), s.get("sep", " "), s.get("end", ""), s.get("turns", False))
                     for s in raw["sections"])
    frames = {pool: tuple((f"{name}.{pool}.{i}", text) for i, text in enumerate(texts))
              for pool, texts in raw["frames"].items()}
    return Genre(name, tuple(raw["people"]), sections, frames, tuple(raw.get("speaker_styles", ("first",))),
                 tuple(raw.get("roles", ("Agent", "Customer"))))


def has_pii(frame: str) -> bool:
    """Whether a frame writes any PII (a person's field other than a place or employer)."""
    return any(who in _PERSON_KEYS + ("me", "you") and what not in ("city", "company")
               for who, what in _SLOT.findall(frame))


@dataclass
class ComposeConfig:
    """What `compose` generates."""

    n: int = 1000
    """Number of documents."""
    seed: int = 0
    """Seed for every choice and Faker value: same seed, same documents."""
    locales: Sequence[str] = DEFAULT_LOCALES
    """Faker locales people come from (texts are English); each needs a row in frames/locales.yaml."""
    genres: Sequence[str] = GENRES
    """Which genres to compose."""
    excerpt_share: float = 0.0
    """Share of documents replaced by a few of their own lines or sentences (excerpts.py)."""

    def __post_init__(self) -> None:
        if self.n < 0:
            raise PiilabError(f"synthetic document count must be >= 0, got {self.n}")
        unknown = [g for g in self.genres if g not in GENRES]
        if unknown or not self.genres:
            raise PiilabError(f"unknown or no genre(s) {', '.join(unknown)}; choose from {', '.join(GENRES)}")
        if not self.locales:
            raise PiilabError("at least one Faker locale is needed")
        if not 0 <= self.excerpt_share <= 1:
            raise PiilabError(f"excerpt share must be within 0 and 1, got {self.excerpt_share}")


@dataclass
class Writer:
    """Builds one document's text left to right, recording each span as it is appended."""

    rng: random.Random
    genre: str
    locale: Locale
    persons: dict[str, Person]
    parts: list[str] = field(default_factory=list)
    at: int = 0
    spans: list[Span] = field(default_factory=list)
    negatives: list[dict[str, str]] = field(default_factory=list)
    features: set[str] = field(default_factory=set)
    fixed: dict[str, str] = field(default_factory=dict)
    clock: int = 0

    def put(self, text: str, label: str | None = None, negative: str | None = None) -> None:
        if label:
            self.spans.append(Span(self.at, self.at + len(text), label, text))
        elif negative:
            self.negatives.append({"value": text, "kind": negative})
        self.parts.append(text)
        self.at += len(text)

    def text(self) -> str:
        return "".join(self.parts)

    # Frames ----------------------------------------------------------------------------------
    def frame(self, template: str, me: str | None = None, you: str | None = None) -> None:
        template = _CHOICE.sub(lambda m: self.rng.choice(m[1].split("|")), template)
        at = 0
        for match in _SLOT.finditer(template):
            self.put(template[at:match.start()])
            who, what = match[1], match[2]
            who = {"me": me, "you": you}.get(who, who) if who else None
            if who is None and match[1]:
                raise PiilabError(f"frame uses {{{match[1]}.{what}}} outside a speaker turn: {template!r}")
            if who:
                self.person_field(self.persons[who], what)
            else:
                self.filler(what)
            at = match.end()
        self.put(template[at:])

    def person_field(self, p: Person, what: str) -> None:
        rng = self.rng
        if what in _VALUE_FIELDS:
            self.put(people.value(rng, p, what), _VALUE_FIELDS[what])
            if what in ("card", "iban", "national_id"):
                kind = people.national_id_kind(p) or "passport"  # a passport number stands in
                self.features.add(what if what != "national_id" else f"national_id:{kind}")
        elif what in ("city", "company"):
            self.filler(what)
        elif what in ("address", "address_ml"):
            lines = people.value(rng, p, "address_lines").split("\n")
            if what == "address":  # one line, or the first 1-2 parts only when the frame is casual
                lines = lines[: rng.randint(2, len(lines))] if len(lines) > 2 and rng.random() < 0.3 else lines
            self.put((", " if what == "address" else "\n").join(lines), "STREET_ADDRESS")
            self.features.add(f"address_{1 if what == 'address' else len(lines)}_lines")
        elif what == "user_named":  # "kev_the_builder (Kevin O'Brien)"
            self.put(people.value(rng, p, "user"), "USERNAME")
            self.put(" (")
            self.name(p, "name")
            self.put(")")
            self.features.add("username_with_name")
        elif what == "named_user":  # "Kevin O'Brien (@kev_the_builder)"
            self.name(p, "name")
            self.put(" (@")
            self.put(people.value(rng, p, "user"), "USERNAME")
            self.put(")")
            self.features.add("username_with_name")
        else:
            self.name(p, what)

    def name(self, p: Person, form: str, recase: bool = True) -> None:
        """A name mention; a title of address and a possessive 's stay outside the span.
        `recase`: a few mentions are written in capitals or lower case, as people type them."""
        rng = self.rng
        if form == "mention":
            form = rng.choice(("name", "first", "first", "titled", "last"))
        if form == "poss":
            self.features.add("possessive")
            self.name(p, rng.choice(("first", "name", "titled")))
            self.put("'" if self.parts[-1].endswith("s") else "'s")
            return
        if form == "titled":
            self.features.add("title")
            self.put(rng.choice(vocab("titles")) + " ")
            form = rng.choice(("name", "last"))
        value = {"name": p.full, "first": p.first, "last": p.last, "NAME": p.full.upper(), "lower": p.full.lower()}[form]
        casing = rng.random() if recase else 1.0
        if form == "NAME" or casing < 0.03:
            value = value.upper()
        elif form == "lower" or casing < (0.12 if self.genre in _CASUAL else 0.04):
            value = value.lower()
        if value != value.lower() and value == value.upper():
            self.features.add("caps")
        elif value == value.lower() and value != value.upper():
            self.features.add("lower")
        self.features.add({"first": "first_only", "last": "last_only"}.get(form, "full_name"))
        self.put(value, "NAME")

    def filler(self, what: str) -> None:
        """A non-PII value; the ones that look like PII are recorded as hard negatives."""
        rng, faker = self.rng, self.locale.faker
        if what in self.fixed:  # a filler keeps its value within a document ("the order" stays one)
            self.put(self.fixed[what], negative=_NEGATIVE_KINDS.get(what))
            return
        makers = {
            "org": lambda: rng.choice(vocab("orgs")) if rng.random() < 0.5 else faker.company(),
            "company": lambda: faker.company(), "city": lambda: faker.city(),
            "country": lambda: rng.choice(vocab("countries")), "product": lambda: rng.choice(vocab("products")),
            "work": lambda: rng.choice(vocab("works")), "work_kind": lambda: rng.choice(vocab("work_kinds")),
            "date": lambda: _date(rng), "public_url": lambda: rng.choice(vocab("public_urls")),
            "order": lambda: rng.choice((f"#{rng.randint(10000, 999999)}", f"ORD-{rng.randint(100000, 999999)}",
                                         f"{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}")),
            "ticket": lambda: rng.choice((f"#{rng.randint(1000, 99999)}", f"CASE-{rng.randint(10000, 99999)}",
                                          f"INC{rng.randint(100000, 999999)}", f"TCK-{rng.randint(1000, 9999)}")),
            "invoice": lambda: f"INV-{rng.randint(2022, 2026)}-{rng.randint(1, 9999):04d}",
            "amount": lambda: f"{rng.choice(('€', '$', '£', ''))}{rng.randint(10, 4999)}.{rng.randint(0, 99):02d}",
            "time": lambda: f"{rng.randint(8, 18)}:{rng.choice(('00', '15', '30', '45'))}",
            "weekday": lambda: rng.choice(vocab("weekdays")), "topic": lambda: rng.choice(vocab("topics")),
            "subject": lambda: rng.choice(vocab("subjects")), "course": lambda: rng.choice(vocab("courses")),
            "author": lambda: rng.choice(vocab("authors")), "hashtag": lambda: rng.choice(vocab("hashtags")),
            "job": lambda: rng.choice(vocab("job_titles")), "skill": lambda: rng.choice(vocab("skills")),
            "degree": lambda: rng.choice(vocab("degrees")), "year": lambda: str(rng.randint(2005, 2025)),
            "n": lambda: str(rng.randint(2, 12)),
            "instructor": lambda: f"{rng.choice(('Professor', 'Dr.', 'Ms.', 'Mr.'))} {rng.choice(self.locale.last_names)}",
            **_developer_fillers(rng),
            **_organisation_contacts(rng, self.locale),
        }
        if what not in makers:
            raise PiilabError(f"frame slot {{{what}}} has no generator")
        self.fixed[what] = makers[what]().strip()
        self.put(self.fixed[what], negative=_NEGATIVE_KINDS.get(what))

    # Transcripts ----------------------------------------------------------------------------
    def speaker(self, key: str | None, style: str, role: str) -> None:
        """A turn's speaker label: a name, a username, or a role when the document has no people."""
        if key is None or style == "role":
            self.put(role)
        else:
            p = self.persons[key]
            if style.startswith("time_"):  # a clock that moves forward a few minutes a turn
                self.clock = self.clock + self.rng.randint(0, 3) if self.clock else self.rng.randint(480, 1080)
                self.put(f"[{self.clock // 60:02d}:{self.clock % 60:02d}] ")
                style = style[len("time_"):]
            self.features.add("speaker_names")
            if style == "user":
                self.put(people.value(self.rng, p, "user"), "USERNAME")
            else:
                # a transcript writes one speaker's label the same way each turn
                self.name(p, {"first": "first", "full": "name", "caps": "NAME"}[style], recase=False)
        self.put(": ")


def _developer_fillers(rng: random.Random) -> dict:
    """Makers of the technical values in developers' text (frames/devlog.yaml): all non-PII."""
    def version() -> str:
        core = ".".join(str(rng.randint(0, 12)) for _ in range(rng.randint(2, 3)))
        return rng.choice((core, f"{core}-{rng.randint(1, 9)}", f"{rng.randint(1, 3)}:{core}+dfsg-1",
                           f"v{core}", f"{core}~rc{rng.randint(1, 3)}"))

    def path() -> str:
        parts = rng.sample(("src", "lib", "tests", "docs", "debian/patches", "include", "tools", "app"), 2)
        name = rng.choice(vocab("package_stems")).replace("-", "_")
        return f"{'/'.join(parts)}/{name}{rng.choice(('.py', '.c', '.h', '.patch', '.rst', '.*', '.json'))}"

    return {
        "package": lambda: (rng.choice(vocab("package_prefixes")) + rng.choice(vocab("package_stems"))
                            + rng.choice(vocab("package_suffixes"))),
        "version": version, "path": path,
        "project": lambda: rng.choice(vocab("projects")), "module": lambda: rng.choice(vocab("modules")),
        "identifier": lambda: rng.choice(vocab("identifiers")), "option": lambda: rng.choice(vocab("options")),
        "code": lambda: rng.choice(vocab("code_snippets")),
        "cve": lambda: f"CVE-{rng.randint(2015, 2026)}-{rng.randint(1000, 49999)}",
        "bug": lambda: rng.choice((f"#{rng.randint(100, 1099999)}", f"GH-{rng.randint(10, 9999)}",
                                   f"issue {rng.randint(10, 9999)}")),
        "commit": lambda: "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((7, 10)))),
    }


def _organisation_contacts(rng: random.Random, locale) -> dict:
    """An organisation's own contact details (its desk's e-mail, its hotline, its premises, its
    site): the same shapes as a person's, and not PII, which only the context tells."""
    faker = locale.faker

    def hotline() -> str:
        if rng.random() < 0.5:  # a switchboard looks like anyone's number
            return faker.phone_number().strip()
        digits = lambda n: "".join(str(rng.randint(0, 9)) for _ in range(n))  # noqa: E731
        return rng.choice((f"0800 {digits(3)} {digits(4)}", f"1-800-{digits(3)}-{digits(4)}",
                           f"0800 {digits(6)}", f"+1 888 {digits(3)} {digits(4)}",
                           f"(877) {digits(3)}-{digits(4)}", f"0808 {digits(3)} {digits(4)}"))

    return {
        "org_email": lambda: f"{rng.choice(vocab('desk_mailboxes'))}@{faker.domain_name()}",
        "org_phone": hotline,
        "org_address": lambda: ", ".join(locale.address_lines(rng)),
        "org_url": lambda: rng.choice(("www.", "https://www.", "https://")) + faker.domain_name()
        + rng.choice(("", "/", "/contact", "/support", f"/track?id={rng.randint(10**8, 10**9)}")),
    }


_NEGATIVE_KINDS = {"org": "organisation", "company": "organisation", "city": "place", "country": "place",
                   "product": "product", "work": "work title", "date": "date", "public_url": "public URL",
                   "order": "order number", "ticket": "ticket number", "invoice": "invoice number",
                   "author": "cited author", "instructor": "instructor", "package": "package name",
                   "version": "version", "path": "file path", "project": "project name",
                   "identifier": "code identifier", "code": "code", "cve": "CVE id", "bug": "issue number",
                   "commit": "commit id", "org_email": "organisation e-mail",
                   "org_phone": "organisation phone", "org_address": "organisation address",
                   "org_url": "organisation website"}


def _date(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2022, 2026)
    return rng.choice((f"{vocab('months')[month - 1]} {day}, {year}", f"{day} {vocab('months')[month - 1]} {year}",
                       f"{day:02d}/{month:02d}/{year}", f"{year}-{month:02d}-{day:02d}", f"{day}.{month}.{year}"))


def _pick(rng: random.Random, frames: Sequence[tuple[str, str]], group: int, clean: bool) -> list[tuple[str, str]]:
    """The frames of one pool a document may use: its structure group's, PII-free ones if `clean`."""
    return [(fid, text) for i, (fid, text) in enumerate(frames) if i % GROUPS == group and not (clean and has_pii(text))]


def compose_one(rng: random.Random, genre: Genre, locale: Locale, others: Sequence[Locale], group: int,
                clean: bool) -> tuple[str, list[Span], list[dict[str, str]], list[str], set[str]]:
    """One document's text, spans, hard negatives, frame ids and structural features."""
    n_people = rng.randint(*genre.people)
    # Four people always (a frame may name any); `people` is how many speak in a transcript.
    persons = {key: new_person(rng, locale if rng.random() < 0.7 or not others else rng.choice(others))
               for key in _PERSON_KEYS}
    w = Writer(rng, genre.name, locale, persons)
    used: list[str] = []
    style = "role" if clean else rng.choice(genre.speaker_styles)
    for section in genre.sections:
        choices = _pick(rng, genre.frames[section.pool], group, clean)
        count = rng.randint(*section.count)
        if not choices and section.count[0] and clean:  # no PII-free frame for a required part
            return "", [], [], [], set()
        if not choices or not count:
            continue
        # Frames of one section differ (a form asks for a name once; nobody says one line twice).
        drawn = rng.sample(choices, min(count, len(choices)))
        for i, (fid, text) in enumerate(drawn):
            if i:
                w.put(section.sep)
            used.append(fid)
            if section.turns:  # alternate between the people, sometimes one speaks twice
                speakers = list(persons)[:n_people]
                me = speakers[i % len(speakers)] if rng.random() < 0.8 else rng.choice(speakers)
                you = rng.choice([s for s in speakers if s != me] or speakers)
                w.speaker(None if style == "role" else me, style, genre.roles[i % len(genre.roles)])
                w.frame(text, me=me, you=you)
            else:
                w.frame(text)
        w.put(section.end)
    text = w.text()
    stripped = text.rstrip()
    spans = [s for s in w.spans if s.end <= len(stripped)]
    # A negative that is also a PII value here ("Iris" the song and Iris the person) is not listed.
    values = {s.value for s in spans}
    negatives = [dict(pair) for pair in dict.fromkeys(tuple(n.items()) for n in w.negatives if n["value"] not in values)]
    return stripped, spans, negatives, used, w.features


def compose(config: ComposeConfig) -> Iterator[Document]:
    """`config.n` composed documents, reproducible from `config.seed`."""
    rng = random.Random(config.seed)
    genres = [load_genre(g) for g in config.genres]
    locales: dict[str, Locale] = {}

    def locale(code: str) -> Locale:
        if code not in locales:  # created on first use: each costs ~50 ms
            locales[code] = Locale(code, seed=config.seed * 1009 + len(locales))
        return locales[code]

    for i in range(config.n):
        genre = rng.choice(genres)
        group = rng.randrange(GROUPS)
        code = rng.choice(list(config.locales))
        others = [locale(c) for c in rng.sample(list(config.locales), min(2, len(config.locales)))]
        clean = rng.random() < NO_PII_SHARE
        text, spans, negatives, frames, features = compose_one(rng, genre, locale(code), others, group, clean)
        if not text.strip() or (clean and spans):
            text, spans, negatives, frames, features = compose_one(rng, genre, locale(code), others, group, False)
        # Its own generator, so that the choice leaves every other document as it was.
        cut = random.Random(f"excerpt:{config.seed}:{i}")
        if cut.random() < config.excerpt_share:
            text, spans = excerpt(cut, text, spans)
            negatives = [n for n in negatives if n["value"] in text]
            features = {"excerpt"}  # the document's structure features need not hold for a part
        meta = {"template_id": f"{genre.name}/{group}", "genre": genre.name, "locale": code,
                "frames": frames, "features": sorted(features), "hard_negatives": negatives}
        yield Document(f"{SOURCE}:{config.seed}:{i:06d}", text, spans, SOURCE, meta)
