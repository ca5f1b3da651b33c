"""Checks for PII values with a fixed shape: e-mail, URL, phone, Luhn card numbers, IBAN (mod 97)
and national ID numbers with check digits. Pure functions of a string, for the generator's tests
and for the extract stage to confirm or complete a model's answer later."""

from __future__ import annotations

import re
import unicodedata

# The shape real mail systems accept, not all of RFC 5322: a dotted local part, a dotted domain
# whose last label is letters. Quoted local parts and IP-literal domains are rare in prose.
_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
# A web address: optional scheme and 'www.', a dotted host whose last label is letters, a port, a path.
_WEB_ADDRESS = re.compile(r"(?P<scheme>https?://)?(?P<www>www\.)?"
                          r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?P<tld>[A-Za-z]{2,63})"
                          r"(?::\d{1,5})?(?P<path>[/?#]\S*)?")
_PHONE_CHARS = re.compile(r"[+0-9()\-./ ]+(?:\s*(?:x|ext\.?)\s*\d{1,5})?")

# IBAN length by country (ISO 13616 registry, the countries a European or American text names most).
IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "BG": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IS": 26, "IT": 27, "LT": 20, "LU": 20, "LV": 21, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "TR": 26,
}


def is_email(value: str) -> bool:
    """An address of the usual shape: local part, one '@', a domain ending in a letters-only label."""
    return len(value) <= 254 and _EMAIL.fullmatch(value) is not None


# An address written so that harvesters miss it: "wk [at] gnupg.org", "nmav at gnutls.org",
# "jane dot roe at gmail dot com". `_AT` and `DOT_WORDS` are the words, bare or in brackets, that
# stand for "@" and "."; the address must end in a top-level domain people register names under
# (a country's two letters or a common generic one), so "at noon dot then" is no address. Where a
# bare " at " reads as one is the text's to say (`piilab.addresses.obfuscated_emails`).
_AT = r"(?:\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+)"
DOT_WORDS = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+)"
_DOT = rf"(?:{DOT_WORDS}|\.)"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LOCAL = r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]*[A-Za-z0-9])?"
_TLD = (r"(?:[a-z]{2}|com|org|net|edu|gov|mil|int|info|biz|name|pro|io|dev|app|me|ai|xyz|online|"
        r"site|tech|email|mail|cloud|museum)")
OBFUSCATED_EMAIL = re.compile(
    rf"(?<![A-Za-z0-9._%+@-])(?P<local>{_LOCAL}(?:{DOT_WORDS}{_LOCAL})*)(?P<at>{_AT})"
    rf"(?P<domain>{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}{_TLD})(?![\w-])", re.IGNORECASE)
_DOT_WORD = re.compile(_DOT, re.IGNORECASE)


def unobfuscated_email(value: str) -> str | None:
    """The plain address an obfuscated one stands for ("wk [at] gnupg.org" -> "wk@gnupg.org");
    None for anything else, a plain address too."""
    match = OBFUSCATED_EMAIL.fullmatch(value)
    if match is None:
        return None
    plain = f"{_DOT_WORD.sub('.', match['local'])}@{_DOT_WORD.sub('.', match['domain'])}"
    return plain if is_email(plain) else None


def is_url(value: str) -> bool:
    """An http(s) URL with a host name (a dotted domain ending in a letters-only label)."""
    match = _WEB_ADDRESS.fullmatch(value)
    return match is not None and match["scheme"] is not None


# Role mailboxes (RFC 2142's and their common kin, a few languages): an organisation's desk, not
# a person's address. Neither the generator nor the dev set labels one as EMAIL.
_ROLE_MAILBOX = re.compile(
    r"(?:info|support|help|helpdesk|service|services|sales|contact|admin|office|team|hello|press|"
    r"security|abuse|postmaster|webmaster|hostmaster|no-?reply|billing|jobs|careers|hr|marketing|"
    r"orders|admissions|enquiries|inquiries|reception|newsletter|kontakt|accueil|secretaria|"
    r"do-?not-?reply|notifications?|alerts?|mailer-daemon|bounces?|news|updates|feedback|privacy|"
    r"dpo|legal|receipts)@",
    re.IGNORECASE)


# A mailing list's own addresses, as list managers (Mailman, Majordomo, ezmlm) name them: the
# manager's "-request", "-bounces", "-owner" and "-admin" addresses and "owner-" ones, GNU's
# "bug-" lists, lists named for who reads them ("-devel", "-users", "-announce") and any address
# at a "lists." host. `LIST_OWN_ADDRESS` is the part that names its list: "ppp-request@zzz.org"
# makes "ppp@zzz.org" a list (not "-admin" or "-owner": a person's admin account has them too).
_LIST_MAILBOX = re.compile(
    r"^(?:owner|bug)-[^@]+@|^[^@]+-(?:request|bounces?|owner|admin|devel|users|announce|discuss|"
    r"bugs|subscribe|unsubscribe|confirm|join|leave|commits)@|@lists\.",
    re.IGNORECASE)
LIST_OWN_ADDRESS = re.compile(r"(?<![\w.+-])(?:owner-(?P<owned>[\w.+-]+)|(?P<list>[\w.+-]+?)-"
                              r"(?:request|bounces))@(?P<host>[\w.-]+\w)", re.IGNORECASE)


def is_role_mailbox(value: str) -> bool:
    """An address whose local part names a desk or a function ('support@', 'info@') or that is a
    mailing list's ('bug-coreutils@gnu.org', 'ppp-request@...', '...@lists.debian.org'), not a
    person's."""
    value = unobfuscated_email(value) or value
    return _ROLE_MAILBOX.match(value) is not None or _LIST_MAILBOX.search(value) is not None


def is_personal_email(value: str) -> bool:
    """An e-mail address of the usual shape, or obfuscated ("wk [at] gnupg.org"), that is not a
    role mailbox."""
    return (is_email(value) or unobfuscated_email(value) is not None) and not is_role_mailbox(value)


# Without a scheme, 'www.' or a path, a dotted word is a web address only under a TLD people
# host their own pages on ('anna.dev'), not a module or file name ('os.path', 'setup.py').
_PERSONAL_SITE_TLDS = frozenset(
    "com org net io dev me info blog site page xyz app co eu de fr nl uk".split())


def is_web_address(value: str) -> bool:
    """A URL as people write them: `is_url`'s shape, or without the scheme ('gitlab.com/anna',
    'www.anna.de', 'anna.dev')."""
    match = _WEB_ADDRESS.fullmatch(value)
    if match is None:
        return False
    return bool(match["scheme"] or match["www"] or match["path"]
                or match["tld"].lower() in _PERSONAL_SITE_TLDS)


# A date written with numbers alone, day or month first or the year first.
NUMERIC_DATE = r"\d{1,2}[./-]\d{1,2}[./-](?:19|20)\d{2}|(?:19|20)\d{2}[./-]\d{1,2}[./-]\d{1,2}"
_DATE = re.compile(NUMERIC_DATE)


def is_numeric_date(value: str) -> bool:
    """A date written with numbers alone ("12.04.2014", "4/12/2014", "2014-04-12"): a phone
    number's characters, and enough digits to pass for one."""
    return _DATE.fullmatch(value.strip()) is not None


def is_phone(value: str) -> bool:
    """Phone-number characters only (digits, + ( ) - . / space, an extension), 7-15 digits, and
    not a date."""
    if _PHONE_CHARS.fullmatch(value.strip()) is None or value.count("+") > 1 or is_numeric_date(value):
        return False
    main = re.split(r"\s*(?:x|ext\.?)\s*", value)[0]
    plus_leads = not main.count("+") or main.lstrip("( ").startswith("+")  # '+49 ...', '(+358) ...'
    return 7 <= sum(c.isdigit() for c in main) <= 15 and plus_leads


# Freephone numbers: the US/Canada's 8XX codes, the "0800" family of most of Europe (0800-0809 in
# the UK, France's 0800-0805), and international freephone (+800). A business pays for them: no
# person's own number is one.
_TOLL_FREE = re.compile(r"(?:\+?1[\s.-]?\(?|\()?8(?:00|33|44|55|66|77|88)(?:\)[\s.-]?|[\s.-])\d"
                        r"|(?:\+800|\(?080[0-9])\)?[\s.-]?\d")


def is_toll_free(value: str) -> bool:
    """A freephone number (1-800-..., 0800 ..., +800 ...): an organisation's line."""
    return _TOLL_FREE.match(value.strip()) is not None


def is_personal_phone(value: str) -> bool:
    """A phone number that is not a freephone number."""
    return is_phone(value) and not is_toll_free(value)


# Necessary, not sufficient: the characters a value of each label can hold at all. A name has
# letters and no digits, code or path characters; a username is one token; an ID number has a digit
# and is not a file path, code or a public CVE id; a street address has a word and a number.
_NOT_IN_NAME = re.compile(r"[\d/\\_=@`()\[\]{}<>#|:;*+]")
_NOT_IN_USERNAME = re.compile(r"[\s/\\()\[\]{}<>`,;*=]")
_NOT_IN_ID = re.compile(r"[^\W\d_]/|/[^\W\d_]|[`\\=!()\[\]{}]")
_NOT_IN_ADDRESS = re.compile(r"[=+`\[\]{}<>@]")  # code characters; "@": an e-mail address
_CVE = re.compile(r"CVE-\d{4}-\d+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{3,}")


# A company's legal form as the last word: "Brightwave Analytics GmbH", "Acme, Inc.".
LEGAL_FORM = re.compile(r"[\s,](?:GmbH|AG|KG|OHG|Inc\.?|Ltd\.?|LLC|LLP|plc|PLC|Corp\.?|Co\.|S\.A\.?|SA|"
                        r"SARL|SAS|S\.r\.l\.|Srl|S\.p\.A\.|SpA|B\.V\.|BV|N\.V\.|NV|Oy|AB|ApS|Pty)$")


# Lower-case words a capitalised name may hold ("Ana de la Cruz", "Ludwig van Beethoven",
# "Ahmed bin Rashid", "al-Hassan", "d'Arcy", Dutch "van het Hof", "van 't Riet", "'s Gravensande",
# "te Velde": an apostrophe's "t" and "s" are words of their own).
NAME_PARTICLES = frozenset("van von de der den da di du del della dei dos das do la le bin binti "
                            "ibn al el y e ter ten te het t s af zu d l".split())
NAME_WORD = re.compile(r"[^\W\d_][\w'’.-]*")


# Words that head, open or close a letter, and titles, in the dev set's ten languages and a few
# more: a "name" of nothing else ("Bonjour", "Madame", "Betreff") is none. Words that are also
# people's names ("Don", "Best", "Frank", "Cara", "Gentile", "Moin") are not here; "Beste" is
# (Dutch "Dear"; a Turkish given name too: the trade-off is named in docs/decisions.md).
LETTER_WORDS = frozenset("""
    subject betreff objet asunto oggetto onderwerp assunto temat ämne konu re fwd aw wg
    hi hello hey dear hallo liebe lieber bonjour bonsoir salut cher chère hola estimado estimada
    ciao buongiorno beste geachte hoi olá oi prezado prezada witam szanowny szanowna
    cześć hej hejsan merhaba sayın servus grüezi
    thanks thank cheers regards danke dankeschön grüße gruß viele merci cordialement amitiés
    freundliche freundlichen grüsse grüßen herzliche herzlichen besten kind sincerely yours mit
    met vriendelijke groet distinti cordiales atenciosamente atentamente vänliga hilsen
    bisous gracias saludos abrazos grazie saluti cordiali bedankt groeten groetjes obrigado
    obrigada beijinhos beijos abraços dziękuję pozdrawiam tack hälsningar teşekkürler sevgiler
    mr mrs ms miss mx dr prof sir madam herr frau fräulein monsieur madame mademoiselle mme mlle
    señor señora señorita sr sra signor signore signora sig meneer mevrouw dhr mevr senhor
    senhora bey hanım""".split())

# Degrees and honours written after a name ("John E. Doe, Ph.D.", "Stephanie Johnson DDS"), as
# they are spelt without their dots: titles, outside the name as "Dr." is. Not "Jr." or "Sr.",
# which are part of a legal name, nor two-letter ones that are surnames too ("Ma", "Ba", "Do").
POST_NOMINALS = frozenset("""
    PhD MD DDS DMD DVM Esq MBA CPA JD LLB LLM MSc BSc MPhil DPhil FRCS FRCP MRCP FACS OBE MBE CBE""".split())
_POST_NOMINALS_IN_CAPITALS = frozenset(form.upper() for form in POST_NOMINALS)


def is_post_nominal(word: str) -> bool:
    """Whether a word is a degree or honour written after a name, as it is spelt or in capitals,
    with or without its dots ("PhD", "Ph.D.", "PHD", "Esq."; not "Md", Bangladeshi names'
    "Mohammed", nor "phd" in prose)."""
    bare = word.replace(".", "")
    return bare in POST_NOMINALS or (bare.isupper() and bare in _POST_NOMINALS_IN_CAPITALS)


# Nouns that make a name an institution's ("Marylebone Health Centre", "Admissions Office");
# nouns that are surnames too ("Church", "Bank", "Hall") are not here.
INSTITUTION_WORDS = frozenset("""
    office centre center clinic clinique klinik kliniek hospital hôpital ospedale ziekenhuis
    krankenhaus school schule école escuela scuola college university universität université
    universidad università department ministry ministerium agency institute institut library
    museum academy akademie council committee association foundation stiftung praxis praktijk""".split())


# A form's caption that asks for an organisation, as its last word ("Company: Deloitte", "Name of
# employer: ...", "Arbeitgeber: ..."): what follows it is no one's NAME.
ORGANISATION_CAPTIONS = frozenset("""
    company employer organisation organization firm firma arbeitgeber unternehmen entreprise société
    empresa azienda vendor supplier lieferant fournisseur proveedor bank school university insurer""".split())
# A form's captions that ask for a place: a name in that field is a town's, not a person's
# ("city: Musterstadt").
PLACE_CAPTIONS = frozenset("""
    city town country state province region county stadt ort land ville pays ciudad país città
    paese stad plaats""".split())
IMPERSONAL_CAPTIONS = ORGANISATION_CAPTIONS | PLACE_CAPTIONS  # fields that ask for no person


def is_mark(char: str) -> bool:
    """A combining mark (Unicode category M): part of the letter before it, as U+0301 in "é"
    written decomposed, though \\w does not match it."""
    return unicodedata.category(char)[0] == "M"


def _lower_word_in_capitalised_name(value: str) -> bool:
    """A lower-case word other than a particle beside capitalised ones ("Sehr geehrte Kunden",
    "unser Kundenservice"): a phrase, not a name. All lower case is casual writing and passes.
    Combining marks are set aside first, so that "García" written decomposed is one word."""
    value = "".join(c for c in value if not is_mark(c))
    words = NAME_WORD.findall(value)
    if value == value.lower() or not any(w[0].isupper() for w in words):
        return False
    return any(w[0].islower() and re.split(r"[-'’]", w)[0].lower() not in NAME_PARTICLES
               for w in words)


def only_letter_words(value: str) -> bool:
    """Whether every word of `value` greets, thanks, titles or heads a letter ("Bonjour",
    "Madame", "Danke", "Mr.", "Ph.D."): no name among them."""
    words = NAME_WORD.findall(value)
    return bool(words) and all(w.strip(".'’-").lower() in LETTER_WORDS or is_post_nominal(w) for w in words)


def is_name(value: str) -> bool:
    """Two letters or more, with no digits, code or path characters (titles and apostrophes pass),
    not ending in a company's legal form, no lower-case word among capitalised ones but particles,
    not only words that greet, thank, title or head a letter, no institution's noun."""
    return (sum(c.isalpha() for c in value) >= 2 and _NOT_IN_NAME.search(value) is None
            and LEGAL_FORM.search(value) is None and not _lower_word_in_capitalised_name(value)
            and not only_letter_words(value)
            and not INSTITUTION_WORDS.intersection(w.lower() for w in NAME_WORD.findall(value)))


# What a one-token "username" can be instead: a chat channel or hashtag ("#konsole"), a source or
# config file ("toom63_mul.c", "pstree.x11"; a short extension only after a digit or "_", since
# "sarah.h" and "dan.rs" are people's), a constant in code ("CURLE_AGAIN").
_NOT_A_USERNAME = re.compile(
    r"^#|[\d_][\w.-]*\.(?:c|h|o|a|so|cc|py|js|ts|go|rs|rb|pl|pm|sh|md)$|"
    r"\.(?:cpp|hpp|txt|rst|x11|conf|cfg|ini|json|ya?ml|xml|html?|css)$|^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_[A-Z][A-Z0-9]*$")


def is_username(value: str) -> bool:
    """One token of two characters or more without path, bracket or code characters; not an
    e-mail address (that is EMAIL), a channel, a file name or a constant."""
    return (len(value) >= 2 and _NOT_IN_USERNAME.search(value) is None and not is_email(value)
            and _NOT_A_USERNAME.search(value) is None)


ID_DIGITS = 4  # fewer cannot tell enough people apart: "xxh64", "GPL-2+", "500" are no one's ID


# Numbers that name a record, a moment or an issue, not a person: a UUID, a timestamp written
# 20130416T092616Z or a date 2013-04-16, an issue, pull request or ticket ("Closes #10896",
# "#4821"; `piilab.shapes.check` keeps a bare "#48291733" after "MRN" or "member").
_NOT_AN_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{8}T\d{4,6}Z?|"
    r"(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])|"
    r"(?:(?:closes|closed|fixes|fixed|resolves|resolved|see|issue|bug|pr)\s*:?\s*)?#\d+",
    re.IGNORECASE)


def is_id_number(value: str) -> bool:
    """Four digits or more, and neither a file path ('debian/patches/x.patch'), code, a CVE id,
    a UUID, a timestamp, a date nor an issue reference ('#10896')."""
    value = value.strip()
    return (sum(c.isdigit() for c in value) >= ID_DIGITS and _NOT_IN_ID.search(value) is None
            and _CVE.fullmatch(value) is None and _NOT_AN_ID.fullmatch(value.rstrip(".,;:")) is None)


SENTENCE_WORDS = 4  # lower-case words of four letters or more that make an "address" prose
_LOWER_WORD = re.compile(r"(?<![\w'’])[^\W\d_]{4,}(?![\w'’])")


def is_street_address(value: str) -> bool:
    """A word of three letters or more and a number (or, without one, three comma-separated
    parts: 'Esplanada Clara Garcia, Tupi B, Machado Verde - RJ'), without code characters or an
    e-mail address's "@" (a CSV row read as one address), and not a sentence: fewer than SENTENCE_WORDS lower-case words of four letters or more (an
    address has names, numbers and short particles: 'rue de la Paix', 'via della Spiga')."""
    numbered = any(c.isdigit() for c in value) or value.count(",") >= 2
    prose = sum(1 for word in _LOWER_WORD.findall(value) if word.islower()) >= SENTENCE_WORDS
    return (numbered and not prose and _WORD.search(value) is not None
            and _NOT_IN_ADDRESS.search(value) is None)


def digits(value: str) -> str:
    """The digits of a value, separators dropped ('4111 1111-1111' -> '411111111111')."""
    return "".join(c for c in value if c.isdigit())


def luhn_check_digit(payload: str) -> int:
    """The digit that, appended to `payload`, makes the Luhn sum a multiple of 10."""
    total = 0
    for i, char in enumerate(reversed(payload)):
        d = int(char)
        if i % 2 == 0:  # doubled: these sit at odd places once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return (10 - total % 10) % 10


def luhn_valid(value: str, lengths: range = range(12, 20)) -> bool:
    """A card-like number (spaces or hyphens allowed) whose Luhn checksum holds."""
    if re.fullmatch(r"[0-9 \-]+", value) is None:
        return False
    number = digits(value)
    return len(number) in lengths and luhn_check_digit(number[:-1]) == int(number[-1])


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits of an IBAN with this country code and account part (ISO 7064 mod 97-10)."""
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged.upper()))
    return f"{98 - number % 97:02d}"


def iban_valid(value: str) -> bool:
    """An IBAN (spaces allowed) with a known country, that country's length, and mod 97 == 1."""
    iban = value.replace(" ", "").upper()
    if re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", iban) is None or len(iban) != IBAN_LENGTHS.get(iban[:2]):
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def is_us_ssn(value: str) -> bool:
    """A US social security number written 123-45-6789, with valid groups (`us_ssn_valid`):
    no phone numbering plan groups its digits 3-2-4 with hyphens."""
    return re.fullmatch(r"\d{3}-\d{2}-\d{4}", value) is not None and us_ssn_valid(value)


def us_ssn_valid(value: str) -> bool:
    """AAA-GG-SSSS with an area other than 000, 666 and 9xx, a group other than 00, a serial other than 0000."""
    match = re.fullmatch(r"(\d{3})[- ]?(\d{2})[- ]?(\d{4})", value)
    if match is None:
        return False
    area, group, serial = match.groups()
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def uk_nino_valid(value: str) -> bool:
    """A UK National Insurance number: two allowed letters, six digits, a suffix A-D (spaces allowed)."""
    nino = value.replace(" ", "").upper()
    match = re.fullmatch(r"([A-CEGHJ-PR-TW-Z])([A-CEGHJ-NPR-TW-Z])\d{6}[A-D]", nino)
    return match is not None and nino[:2] not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ")


def steuer_id_check_digit(payload: str) -> int:
    """The 11th digit of a German tax ID (ISO 7064 MOD 11,10 over the first ten)."""
    product = 10
    for char in payload:
        total = (int(char) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10


def de_steuer_id_valid(value: str) -> bool:
    """A German Steuer-ID: 11 digits, no leading 0, in the first ten one digit twice or three
    times and the others at most once, and the MOD 11,10 check digit."""
    number = value.replace(" ", "")
    if re.fullmatch(r"[1-9]\d{10}", number) is None:
        return False
    counts = sorted((number[:10].count(d) for d in set(number[:10])), reverse=True)
    return counts[0] in (2, 3) and all(c == 1 for c in counts[1:]) \
        and steuer_id_check_digit(number[:10]) == int(number[10])


def fr_nir_valid(value: str) -> bool:
    """A French social security number (NIR): sex, year, month, place, order, and key = 97 - n % 97."""
    number = value.replace(" ", "")
    match = re.fullmatch(r"([12])(\d{2})(0[1-9]|1[0-2])(\d{8})(\d{2})", number)
    return match is not None and 97 - int(number[:13]) % 97 == int(number[13:])


def nl_bsn_valid(value: str) -> bool:
    """A Dutch citizen service number (BSN): 9 digits passing the 11-test (weights 9..2, then -1)."""
    number = value.replace(".", "").replace(" ", "")
    if re.fullmatch(r"\d{9}", number) is None or number == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(number, range(9, 1, -1))) - int(number[8])
    return total % 11 == 0


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_letter(number: int) -> str:
    """The control letter of a Spanish DNI number."""
    return _DNI_LETTERS[number % 23]


def es_dni_valid(value: str) -> bool:
    """A Spanish DNI: 8 digits and the control letter (number mod 23)."""
    match = re.fullmatch(r"(\d{8})-?([A-Z])", value.upper())
    return match is not None and es_dni_letter(int(match[1])) == match[2]


def pl_pesel_check_digit(payload: str) -> int:
    """The last digit of a Polish PESEL (weights 1 3 7 9 repeating over the first ten)."""
    return (10 - sum(int(d) * w for d, w in zip(payload, (1, 3, 7, 9) * 3)) % 10) % 10


def pl_pesel_valid(value: str) -> bool:
    """A Polish PESEL: 11 digits with its weighted check digit."""
    return re.fullmatch(r"\d{11}", value) is not None and pl_pesel_check_digit(value[:10]) == int(value[10])


def se_personnummer_valid(value: str) -> bool:
    """A Swedish personal number YYMMDD-NNNC (or with a century, or '+'): Luhn over the last ten digits."""
    match = re.fullmatch(r"(?:\d{2})?(\d{6})[-+]?(\d{4})", value)
    return match is not None and luhn_check_digit((match[1] + match[2])[:-1]) == int(match[2][-1])


def ch_ahv_valid(value: str) -> bool:
    """A Swiss social insurance number (AHV/AVS) 756.1234.5678.97: 13 digits from 756, the last
    an EAN-13 check digit."""
    number = value.replace(".", "")
    if re.fullmatch(r"756\d{10}", number) is None:
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(number[:12]))
    return (10 - total % 10) % 10 == int(number[12])


def br_cpf_check_digits(payload: str) -> str:
    """The two check digits of a Brazilian CPF over its first nine digits."""
    out = payload
    for start in (10, 11):
        total = sum(int(d) * w for d, w in zip(out, range(start, 1, -1)))
        out += str(total * 10 % 11 % 10)
    return out[9:]


def br_cpf_valid(value: str) -> bool:
    """A Brazilian CPF (000.000.000-00 or 11 digits) with both check digits, not all one digit."""
    if re.fullmatch(r"\d{3}\.?\d{3}\.?\d{3}-?\d{2}", value) is None:
        return False
    number = digits(value)
    return len(set(number)) > 1 and br_cpf_check_digits(number[:9]) == number[9:]


# National ID kind -> its validator (the kinds `piilab.data.ids` generates).
NATIONAL_ID_VALIDATORS = {
    "us_ssn": us_ssn_valid, "uk_nino": uk_nino_valid, "de_steuer_id": de_steuer_id_valid,
    "fr_nir": fr_nir_valid, "nl_bsn": nl_bsn_valid, "es_dni": es_dni_valid,
    "pl_pesel": pl_pesel_valid, "se_personnummer": se_personnummer_valid, "br_cpf": br_cpf_valid,
}
