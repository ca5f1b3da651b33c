"""Where an address belongs: a country's name (which an address span leaves out) and the name of
an organisation's premises (whose address is no one's PII). Pure functions of a string, for
`piilab.shapes.check`."""

from __future__ import annotations

from functools import lru_cache

from piilab.data.validators import INSTITUTION_WORDS, LEGAL_FORM, NAME_WORD

# Faker's address providers whose `countries` are read: English, and the languages of the
# countries piilab composes documents for. Names they lack, written in addresses: below.
_COUNTRY_LISTS = ("en", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE", "da_DK",
                  "fi_FI", "cs_CZ")
_MORE_COUNTRIES = ("USA", "U.S.A.", "US", "U.S.", "UK", "U.K.", "United States of America", "Great Britain",
                   "England", "Scotland", "Wales", "Northern Ireland", "Holland", "Russia", "Россия",
                   "Российская Федерация", "Deutschland", "Österreich", "Schweiz", "Suisse", "Svizzera",
                   "España", "Italia", "Nederland", "Sverige", "Danmark", "Suomi", "Polska", "Brasil",
                   "Česko", "Česká republika", "België", "Belgique", "Éire", "Norge", "Ísland", "Ελλάδα",
                   "Türkiye", "Magyarország", "România", "Hrvatska", "Slovensko", "Slovenija", "Srbija",
                   "България", "Україна", "Eesti", "Latvija", "Lietuva", "Lëtzebuerg", "Perú", "日本",
                   "中国", "中華民國", "대한민국", "Việt Nam", "ประเทศไทย", "Indonesia")

# Names that also end addresses as a state or city ("Atlanta, Georgia"; a city-state's own line):
# never taken for a country line.
_ALSO_PLACES = ("Georgia", "Jersey", "Guernsey", "Luxembourg", "Luxemburg", "Singapore", "Monaco", "Djibouti",
                "Kuwait", "San Marino", "Hong Kong", "Macau", "Macao", "Gibraltar", "Vatican City", "Guatemala",
                "Panama", "Panamá", "Mexico", "México", "Andorra", "Bahrain", "Qatar", "Liechtenstein")


@lru_cache(maxsize=1)
def _country_names() -> frozenset[str]:
    from importlib import import_module

    names = set(_MORE_COUNTRIES)
    for language in _COUNTRY_LISTS:
        names.update(getattr(import_module(f"faker.providers.address.{language}").Provider, "countries", ()))
    return frozenset(_country_key(name) for name in names) - {_country_key(name) for name in _ALSO_PLACES}


def _country_key(value: str) -> str:
    key = value.strip().rstrip(".").casefold()
    return key[4:] if key.startswith("the ") else key


def is_country(value: str) -> bool:
    """Whether `value` is a country's name alone ("Germany", "the Netherlands", "Deutschland",
    "U.S.A.", "Российская Федерация"), in English or a language piilab composes for."""
    return _country_key(value) in _country_names()


# Nouns that make a line an organisation's premises where it heads an address ("Melbourne
# Magistrates' Court", "Bank Avrasiya", "Flatt's Post Office", "Embassy of ..."): as a street
# line's words ("12 Bank Street") they come with a number, and such lines are not asked about.
_PREMISES_WORDS = INSTITUTION_WORDS | frozenset("""
    embassy consulate botschaft konsulat ambassade consulat embajada consulado ambasciata court
    gericht tribunal tribunale bank banque banca banco hotel restaurant café cafe store shop
    station bahnhof gare airport flughafen aéroport aeropuerto church kirche église iglesia chiesa
    police polizei pharmacy apotheke pharmacie farmacia post bar pub mall cinema kino cinéma theatre
    theater théâtre teatro gallery galerie galleria market supermarket supermarkt supermarché bakery
    bäckerei boulangerie panadería brewery brauerei winery hostel motel pizzeria bistro brasserie
    trattoria gym stadium stadion""".split())


def is_premises(line: str) -> bool:
    """Whether a line with no digit names an organisation's premises: a company's legal form at
    its end ("Bauer Wirth GmbH") or a noun of a place of business or office ("Magistrates' Court")."""
    words = {w.strip(".'’-").lower() for w in NAME_WORD.findall(line)}
    return (not any(c.isdigit() for c in line)
            and (LEGAL_FORM.search(line.rstrip(" ,.:")) is not None or bool(words & _PREMISES_WORDS)))
