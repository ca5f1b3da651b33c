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
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from piilab.errors import PiilabError
from piilab.records import Document, Span

SOURCE = "synthetic"
DEFAULT_LOCALES = ("en_US", "en_GB", "en_IN", "de_DE", "fr_FR", "es_ES")
GENRES = ("essay", "email", "chat", "form", "social")

# Template id -> text. `{slot}` is filled per document (same slot, same value); the slot names
# and what they produce are in `_PII_SLOTS`, `_NEGATIVE_SLOTS` and `_Filler` below. `[a|b|c]` is a choice, one
# alternative per document (an empty one is allowed), so one template has many surface forms:
# field names, what follows a value, one-line or multi-line addresses. Templates are the unit a
# split holds out, so a new template should differ from the others in more than its wording.
TEMPLATES: dict[str, str] = {
    # Student essay passages (Kaggle-like: only the student's own data is PII).
    "essay-01": "My name is {name} and I am a student in {instructor}'s {course} class.[ My project blog is "
    "{url}.|] In this essay I will explain why {topic} matters, drawing on the ideas of {author}.",
    "essay-02": "When our team started the design challenge, {first} suggested we interview users first.[ "
    "{first2} took the notes.|] As {author} writes, understanding a problem comes before solving "
    "it. This changed how I approached {topic}.",
    "essay-03": "Reflection by {name}\n\nDuring the project I kept a journal on my blog at {url}, which "
    "helped me track what I learned about {topic}.",
    "essay-04": "I worked with my classmate {name2} on the prototype. We met every {weekday} and shared notes "
    "by email ({email}).[ My phone is {phone} if the team needs me.|] Our instructor, "
    "{instructor}, gave us feedback each week.",
    "essay-05": "{author} argues that {topic} is shaped by habits. In my own experience as a student this "
    "was true: I changed my study routine and my grades improved.",
    "essay-06": "The visualization tool I chose was mind mapping. I first read about it on {public_url} "
    "and then tried it in {instructor}'s workshop on {topic}.",
    "essay-07": "Student: {name}\nID: {student_id}\nCourse: {course}\n\nIn this assignment I describe how "
    "storytelling helped our group understand {topic}.",
    "essay-08": "If you want to see the full project, my portfolio is online at {url}[ (I post as {user} "
    "there)|], or you can reach me at {email}. I am happy to share the data we collected.",
    "essay-09": "As a first-year student, I, {name}, did not expect {topic} to be so interesting. Reading "
    "{book} by {author} changed my mind, and I used it in my final project.",
    "essay-10": "Our mentor, {instructor}, asked each of us to present. {first2} went first and explained "
    "the survey results; I followed with the prototype. Afterwards {first2} and I rewrote the "
    "conclusion together.",
    "essay-11": "I posted my reflections under the username {user} on the course forum[, where {first2} and|, "
    "where] other students commented on my ideas about {topic}.",
    "essay-12": "This essay was written for {course}. It discusses {topic} and refers to the work of "
    "{author} and the lecture notes published at {public_url}.",
    # Emails.
    "email-01": "Hi {first2},\n\nThanks for your help with the {product} order {order}. Could you send the "
    "invoice to {email}?[ You can also call me on {phone}.|]\n\nBest,\n{name}",
    "email-02": "Dear {name},\n\nYour new library card is ready. Please bring a photo ID to the front "
    "desk. Your member number is {student_id}.\n\nKind regards,\nCity Library",
    "email-03": "Subject: Change of address\n\nHello,\nplease update my records. My new address is {address}.[ "
    "My phone number stays the same: {phone}.|]\n\nThanks,\n{name}",
    "email-04": "Hello team,\n\nthe meeting on {topic} moves to {weekday} at {time}. The agenda is on "
    "{public_url}. Please reply by {date}.\n\nThanks!",
    "email-05": "Hi {first},\n\nyour order {order} has shipped and should arrive by {date}. Track it on "
    "{public_url}.[ The driver will text you on {phone}.|]\n\n{company} Customer Care",
    "email-06": "From: {email}\nTo: {email2}\n\nHey {first2}, here are the slides from today.[ My notes are on "
    "{url} if you want them.|] Cheers, {first}",
    "email-07": "Dear Sir or Madam,\n\nI am writing to confirm my passport number, {passport}, for the "
    "visa application submitted on {date}.\n\nYours faithfully,\n{name}",
    "email-08": "Hi {first},\n\nwelcome to {company}! Your login is {user}.[ Your customer number is "
    "{student_id}.|] Never share your password with anyone. If you need help, just reply to this "
    "email.\n\nThe {company} team",
    "email-09": "Please find the payment details below. Account holder: {name}. IBAN: {account}. "
    "Reference: invoice {order}.",
    "email-10": "Dear {instructor},\n\nI could not attend the lecture on {topic} today. Could you tell me "
    "where to find the slides?\n\nThank you,\n{name}[\nStudent ID {student_id}|\n{email}|]",
    "email-11": "Reminder: the {course} exam is on {date}. Bring a pen and your student card. Good luck!",
    "email-12": "Hi {first2},\n\nI moved! Send the wedding invitation to:\n{address_ml}\n\nLove,\n{first}",
    # Support chats.
    "chat-01": "Customer: Hi, I can't log in to my account.\nAgent: Sorry to hear that. What is your "
    "username?\nCustomer: It's {user}.\nAgent: Thanks, I have sent a reset link to the email on file.",
    "chat-02": "Agent: Thanks for contacting {company}. How can I help?\nCustomer: My order {order} never "
    "arrived.\nAgent: I'm sorry. Can you confirm the delivery address?\nCustomer: {address}.[ And "
    "my number is {phone}.|]",
    "chat-03": "Customer: Hello, this is {name}. I need to update my phone number to {phone}.\nAgent: Done! "
    "Anything else?\nCustomer: [No, that's all, thanks.|Yes, my email is now {email}.]",
    "chat-04": "Customer: What are your opening hours on {weekday}?\nAgent: We are open from 9 am to 6 pm. "
    "You can also check {public_url}.\nCustomer: Great, thanks!",
    "chat-05": "Agent: For verification, please give me your ID number.\nCustomer: Sure, it's "
    "{ssn}.\nAgent: Thank you, {first}. Your account is verified.",
    "chat-06": "Customer: I want to return the {product} from order {order}.\nAgent: No problem. A return "
    "label will be sent to {email}.\nCustomer: Thanks![ It's {first}, by the way.|]",
    "chat-07": "Customer: Hi, my email changed. The old one was {email_old} and the new one is "
    "{email}.\nAgent: Updated. You'll get confirmations at the new address from now on.",
    "chat-08": "Agent: Ticket {ticket} is now closed. Is there anything else I can help you with "
    "today?\nCustomer: No, that solved it. Thank you!",
    "chat-09": "Customer: Can you send the technician to {address}? I'm home after {time}.\nAgent: Of course. "
    "He will call you on {phone} before arriving.",
    "chat-10": "Customer: Hi, I'm {first}. My card was blocked, the account number is {account}.\nAgent: "
    "Thanks {first}, I can see the block. I'll lift it now.",
    "chat-11": "User: hey, can someone check my profile {url}? it shows the wrong picture[ #help|]\nSupport: "
    "Sure, we'll look into it. Ticket {ticket} created.",
    # Forms and records.
    "form-01": "Name: {name}\nEmail: {email}\n[Phone: {phone}\n|]Preferred contact time: {time}",
    "form-02": "APPLICATION FORM\nApplicant: {name}\nAddress: {address}\nDate of application: "
    "{date}\nProgramme: {course}",
    "form-03": "Patient record\nName: {name}\nInsurance number: {ssn}\nNext appointment: {date} with "
    "{instructor}",
    "form-04": "Student ID: {student_id}\nName: {name}\n[Username: {user}\n|]Advisor: {instructor}",
    "form-05": "Order summary\nOrder number: {order}\nItem: {product}\nDelivery: {date}\nShip to: {name}, "
    "{address}",
    "form-06": "Registration\nFull name: {name}\nPassport: {passport}\nNationality: "
    "{country}\nEmergency contact: {name2}, {phone}",
    "form-07": "Event: {topic} meetup\nDate: {date}\nVenue: {company} offices, {city}\nTickets: "
    "{public_url}",
    "form-08": "Contact card\n{name}\n{address_ml}\nTel. {phone}[\nWeb: {url}|]",
    "form-09": "Product: {product}\nSerial number: {serial}\nWarranty until: {date}\nSupport: {public_url}",
    "form-10": "Bank transfer\nBeneficiary: {name}\nIBAN: {account}\nAmount: {amount}\nReference: {order}",
    # Social posts.
    "social-01": "Just finished my first marathon!! Huge thanks to {first2} for running the last 10k with "
    "me. Follow my training at {url} #running #{hashtag}",
    "social-02": "New blog post about {topic} is up: {public_url}. Thoughts welcome! #{hashtag}",
    "social-03": "Shoutout to @{user} for the amazing {product} review.[ Totally agree with everything!| More "
    "at {url} #{hashtag}]",
    "social-04": "Lost my phone at the {city} festival today. If you found it, please call {phone} or DM me "
    "here.[ Reward offered!| It belongs to {first}.|]",
    "social-05": "Reading {book} by {author} this weekend. Anyone else? #bookclub",
    "social-06": "Selling my old bike, like new. Pick-up at {address}. Message me at {email}[ #{hashtag}| or "
    "see {url}|].",
    "social-07": "Happy birthday {name}!!! Can't believe it's been ten years since we met in {city}.[ "
    "#{hashtag} #friends|]",
    "social-08": "Our {company} team had a great time at the {topic} conference. Slides are at "
    "{public_url}.",
    "social-09": "Follow my new channel {url} and find me on the other app as {user}. New videos about {topic} "
    "every {weekday}![ #{hashtag}|]",
    "social-10": "Congrats to {name} and {name2} on winning the school science fair with their project on "
    "{topic}!",
    "social-11": "Quote of the day from {instructor}: 'Read the question twice.' Best advice for finals "
    "week. #studentlife",
    # Letters and notes with multi-line addresses and signatures.
    "email-13": "[Dear|Hello|Hi] {first},\n\nplease [ship|send|post] the [parcel|documents|keys] to my [new "
    "|]address:\n\n{address_ml}\n\n[Thanks|Many thanks|Cheers],\n{name2}",
    "email-14": "{name}\n{address_ml}\n[Tel|Phone|Mobile]: {phone}\n\n[Re|Subject]: [complaint about|question "
    "on] order {order}\n\nTo whom it may concern, the {product} I received [does not work|arrived "
    "broken].",
    "email-15": "Hi all,\n\n[my new email is|please write to me at|from now on use] {email} [(not the old "
    "one)|instead|for everything]. [See you on {weekday}!|Thanks!]\n\n-- {first}",
    "email-16": "Hello {instructor},\n\n[attached is|here is] my [essay|report|lab work] on "
    "{topic}.\n[Name|Student]: {name}\n[ID|Student ID|Matriculation no.|ID no.]: "
    "{student_id}\n\n[Regards|Best wishes]",
    "email-17": "[Hey|Hi] {first2}! [Add|Follow] me on [GitHub|my blog|YouTube]: {url} [:)|!|- new stuff every "
    "week]\n{first}",
    "email-18": "Newsletter from {company}: [our summer sale starts|the new catalogue is out] on {date}. "
    "[Visit|See] {public_url} [for details|to learn more].",
    # Chats.
    "chat-12": "Customer: [I'd like to|Can I] update my [delivery|home] address.\nAgent: Sure, what is the "
    "new one?\nCustomer:\n{address_ml}\nAgent: [Saved|Updated], thank you!",
    "chat-13": "Agent: Can I have your [customer number|member ID|account ID|ID], please?\nCustomer: "
    "[It's|Yes,] {student_id}[.|, and my name is {name}.]\nAgent: Thank you, that's "
    "[found|verified].",
    "chat-14": "User: [my handle is|I'm] @{user} [on here|btw], [can you|could you] reset my "
    "[2FA|password]?\nSupport: [Done|Sure], check your email.",
    "chat-15": "Agent: Your [ticket|case] {ticket} is [open|in progress]. [We'll call you|Expect a call] "
    "[on|at] {phone} [today|tomorrow|within 24 hours].\nCustomer: [Great|OK], thanks.",
    "chat-16": "Customer: [hi|hello], is the {product} [in stock|available] in {city}?\nAgent: [Yes|Not yet], "
    "[see|check] {public_url}.",
    # Forms.
    "form-11": "[MEMBERSHIP|ENROLMENT|REGISTRATION] [FORM|CARD]\n[Surname, first name|Name|Member]: "
    "{name}\n[ID|No.|Member no.|Card number]: {student_id}\n[Valid until|Issued]: {date}",
    "form-12": "[Invoice|Receipt] {order}\n[Bill to|Customer|Sold to]:\n{name}\n{address_ml}\n[Total|Amount]: "
    "{amount}",
    "form-13": "[Profile|About me]\n[Handle|Username|User]: {user}\n[Website|Homepage|Links]: "
    "{url}\n[Joined|Member since] {date}",
    "form-14": "[Guest list|Attendees|Participants] ({topic} [workshop|meetup]):\n- {name}\n- "
    "{name2}\n[Room|Venue]: {company}, {city}",
    "form-15": "[Emergency contact|Next of kin]: {name2}\n[Relationship|Relation]: "
    "[sister|friend|father|partner]\n[Phone|Tel.|Mobile]: {phone}\n[Email|E-mail]: {email2}",
    "form-16": "[Shipment|Delivery] note\n[Tracking|Order] number: {order}\n[Carrier|Courier]: "
    "{company}\n[Status|State]: [in transit|delivered] [{date}|]",
    # Essays.
    "essay-13": "[In my|For my] {course} [portfolio|project], I ({name}) [interviewed|surveyed] "
    "[five|ten|twelve] students about {topic}. [My notes are at|The raw data is on] {url} [if you "
    "are curious.|.|(public).]",
    "essay-14": "[Written by|Author:|By] {name}, [student|learner] no. {student_id}\n\n[This|The following] "
    "essay [examines|explores] {topic} [through the lens of|using] {author}'s [ideas|framework].",
    "essay-15": "[During the workshop|In our first session], {instructor} [paired me with|introduced me to] "
    "{first2}. [Together we|We] [built|sketched] a [prototype|storyboard] about {topic}[ and "
    "presented it on {weekday}|].",
    "essay-16": "[Looking back|In conclusion], {topic} [taught me|showed me] [patience|how to ask better "
    "questions]. {author} [was right|puts it well]: [small habits compound|failure is feedback].",
    # Social posts.
    "social-12": "[New video|New post|New episode] [is live|just dropped]! {url} [#{hashtag} "
    "#vlog|#{hashtag}|🔥|]",
    "social-13": "[Thanks|Big thanks|Shoutout] @{user} [for the tips|for the ride|for coming]! "
    "[#{hashtag}|#friends #{hashtag}|]",
    "social-14": "[Moving sale|Garage sale] this {weekday} at {address} [#sale #{hashtag}|- everything must "
    "go!|]. [DM me|Text me] [on|at] {phone}.",
    "social-15": "[Congrats|Well done|So proud of] {first} [and|&] {first2} [on the new job|on graduating|for "
    "finishing the race]! [#{hashtag} #proud|#{hashtag}|🎉]",
    "social-16": "[Great|Interesting] [read|thread] about {topic}: {public_url} [#{hashtag}|(via {company})|]",
}

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


def _slug(text: str) -> str:
    """ASCII lower-case letters and digits only ('Clémence' -> 'clemence'), for emails and URLs."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower()) or "user"


class _Locale:
    """One Faker locale, seeded, with its name lists taken out for fast uniform draws."""

    def __init__(self, locale: str, seed: int) -> None:
        from faker import Faker  # imported here: Faker takes a third of a second to import

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
        first, last, r = _slug(person.first), _slug(person.last), self.rng
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
        first, last, r = _slug(self.a.first), _slug(self.a.last), self.rng
        return r.choice((f"{first}{last[:1]}{r.randint(1, 99)}", f"{first}_{last}", f"{first[0]}{last}{r.randint(80, 99)}",
                         f"the_real_{first}", f"{last}.{first}", f"{first}{r.choice(('x', 'z', '_'))}{r.randint(1, 9)}"))

    def _url(self) -> str:
        user, r = self.value("user"), self.rng
        first, last = _slug(self.a.first), _slug(self.a.last)
        return r.choice((f"https://github.com/{user}", f"https://www.linkedin.com/in/{first}-{last}-{r.randint(10, 999)}",
                         f"https://{user.replace('_', '-').replace('.', '-')}.blogspot.com", f"https://www.youtube.com/@{user}",
                         f"https://medium.com/@{user}", f"https://www.{first}{last}.net", f"https://twitter.com/{user}"))

    def _phone(self) -> str:
        return self.loc.faker.phone_number()

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
