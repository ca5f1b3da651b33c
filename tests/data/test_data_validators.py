"""Fixed-shape validators against published valid numbers and near misses, and the ID
generators against the validators: every generated number passes its check."""

from __future__ import annotations

import random

import pytest

from piilab.data import ids
from piilab.data import validators as v

# (validator, value, expected). The valid values are the published examples of each scheme
# (Wikipedia, issuing authorities' documentation); the invalid ones change one character.
CASES = [
    (v.is_email, "oluwaseun.ah@posteo.de", True),
    (v.is_email, "kev.o-brien+news@mail.example.co.uk", True),
    (v.is_email, "no-at-sign.example.com", False),
    (v.is_email, "two@@example.com", False),
    (v.is_email, "trailing.dot.@example", False),
    (v.is_url, "https://github.com/kobrien-dev", True),
    (v.is_url, "http://www.example.org:8080/path?q=1#top", True),
    (v.is_url, "github.com/kobrien-dev", False),
    (v.is_url, "https://no spaces.com", False),
    (v.is_phone, "+49 30 9018 2245", True),
    (v.is_phone, "(555) 010-4477 ext. 12", True),
    (v.is_phone, "020 7946 0018", True),
    (v.is_phone, "12345", False),
    (v.is_phone, "call me maybe", False),
    (v.is_phone, "49+ 30 9018 2245", False),
    (v.is_phone, "12.04.2014", False),  # dates have a phone's characters and digits
    (v.is_phone, "2002-09-24", False),
    (v.is_phone, "4/12/2014", False),
    (v.is_phone, "06.12.34.56.78", True),
    (v.luhn_valid, "4539 1488 0343 6467", True),
    (v.luhn_valid, "3714-496353-98431", True),
    (v.luhn_valid, "4539 1488 0343 6468", False),
    (v.luhn_valid, "4539 1488 0343 646A", False),
    (v.iban_valid, "GB82 WEST 1234 5698 7654 32", True),
    (v.iban_valid, "DE89370400440532013000", True),
    (v.iban_valid, "NL91ABNA0417164300", True),
    (v.iban_valid, "GB82 WEST 1234 5698 7654 33", False),
    (v.iban_valid, "DE8937040044053201300", False),  # one digit short for DE
    (v.iban_valid, "XX89370400440532013000", False),
    (v.us_ssn_valid, "078-05-1120", True),
    (v.us_ssn_valid, "666-05-1120", False),
    (v.us_ssn_valid, "078-00-1120", False),
    (v.uk_nino_valid, "QQ 12 34 56 C", False),  # QQ is a documentation prefix, never issued
    (v.uk_nino_valid, "AB 12 34 56 C", True),
    (v.uk_nino_valid, "GB123456A", False),
    (v.de_steuer_id_valid, "86095742719", True),
    (v.de_steuer_id_valid, "86095742718", False),
    (v.de_steuer_id_valid, "12345678903", False),  # ten different digits: no digit repeated
    (v.fr_nir_valid, "2 55 08 14 168 025 38", True),
    (v.fr_nir_valid, "2 55 08 14 168 025 39", False),
    (v.nl_bsn_valid, "111222333", True),
    (v.nl_bsn_valid, "111222334", False),
    (v.nl_bsn_valid, "111222332", False),  # weighted sum 67: off by one from the 11-test
    (v.es_dni_valid, "12345678Z", True),
    (v.es_dni_valid, "12345678A", False),
    (v.pl_pesel_valid, "44051401359", True),
    (v.pl_pesel_valid, "44051401358", False),
    (v.se_personnummer_valid, "811218-9876", True),
    (v.se_personnummer_valid, "811218-9875", False),
    (v.br_cpf_valid, "529.982.247-25", True),
    (v.br_cpf_valid, "529.982.247-26", False),
    (v.br_cpf_valid, "111.111.111-11", False),
    # shapes a label's value must have at all: real values pass, technical prose does not
    (v.is_phone, "(+358) 179579576", True),
    (v.is_personal_email, "oluwaseun.ah@posteo.de", True),
    (v.is_personal_email, "support@patagonia.com", False),  # a role mailbox: a desk, not a person
    (v.is_personal_email, "bug-coreutils@gnu.org", False),  # a mailing list's addresses
    (v.is_personal_email, "ppp-request@zzz.org", False),
    (v.is_personal_email, "owner-freebsd-isp@FreeBSD.ORG", False),
    (v.is_personal_email, "debian-l10n-french@lists.debian.org", False),
    (v.is_personal_email, "jean-luc.remy@example.fr", True),
    (v.is_personal_email, "anna-bugsy@example.org", True),
    (v.is_personal_email, "ivan.petrov@list.ru", True),  # a mail provider, not a lists. host
    (v.is_personal_email, "bugs-bunny@warner.com", True),
    (v.is_personal_email, "ana-user@uni.pt", True),
    (v.is_personal_email, "jane dot roe at gmail dot com", True),
    (v.is_personal_email, "wk [at] gnupg.org", True),  # obfuscated, still a person's
    (v.is_personal_email, "imcusg at gmail dot com", True),
    (v.is_personal_email, "support [at] example.org", False),
    (v.is_personal_email, "at at at", False),
    (v.is_personal_email, "No-Reply@example.org", False),
    (v.is_personal_email, "supporter.jane@example.org", True),
    (v.is_web_address, "gitlab.com/hmustafa", True),
    (v.is_web_address, "www.anna-berg.de", True),
    (v.is_web_address, "tobiadeyemi.com", True),
    (v.is_web_address, "setup.py", False),
    (v.is_web_address, "os.path", False),
    (v.is_name, "Mrs. Oluwaseun Adebayo-Hartmann", True),
    (v.is_name, "O'Brien", True),
    (v.is_name, "Jacob van het Heerenveen", True),  # Dutch particles, as Faker's nl_NL writes them
    (v.is_name, "Amira van 't Riet", True),
    (v.is_name, "Niek 's Gravensande", True),
    (v.is_name, "Lotte te Velde", True),
    (v.is_name, "Afspraak met Jan", False),  # a lower-case word that is no particle: a phrase
    (v.is_name, "zoë", True),
    (v.is_name, "Jose\u0301 Garci\u0301a", True),  # decomposed accents: "García" is one word
    (v.is_name, "Jose\u0301 garci\u0301a", False),
    (v.is_name, "qt4", False),
    (v.is_name, "t", False),
    (v.is_name, "x(arg)", False),
    (v.is_name, "Brightwave Analytics GmbH", False),  # a company's legal form ends it
    (v.is_name, "Acme, Inc.", False),
    (v.is_name, "Jane Ltd-Hopkins", True),
    (v.is_name, "Abba Oyelaran", True),
    (v.is_name, "Ana de la Cruz", True),
    (v.is_name, "Ahmed bin Rashid al-Hassan", True),
    (v.is_name, "jane doe", True),  # casual writing
    (v.is_name, "Sehr geehrte Kundinnen und Kunden", False),  # a salutation
    (v.is_name, "unser Kundenservice", False),
    (v.is_toll_free, "0800 123 4567", True),
    (v.is_toll_free, "1-800-638-6464", True),
    (v.is_toll_free, "(877) 555-0199", True),
    (v.is_toll_free, "+1 888 555 0100", True),
    (v.is_toll_free, "+800 1234 5678", True),
    (v.is_toll_free, "040 605 90 000", False),
    (v.is_toll_free, "+49 30 9018 2245", False),
    (v.is_toll_free, "080 1234 5678", False),  # a Japanese mobile, not 0800
    (v.is_toll_free, "+855 12 345 678", False),  # Cambodia's country code
    (v.is_personal_phone, "+49 30 9018 2245", True),
    (v.is_personal_phone, "0808 157 0192", False),
    (v.is_username, "kev_the_builder", True),
    (v.is_username, "@anna.b", True),
    (v.is_username, "d/control", False),
    (v.is_username, "pkg-config gpg-error", False),
    (v.is_username, "x", False),
    (v.is_username, "balint@example.hu", False),  # an e-mail address is EMAIL
    (v.is_username, "#konsole", False),  # a channel
    (v.is_username, "toom63_mul.c", False),  # a source file
    (v.is_username, "CURLE_AGAIN", False),  # a constant
    (v.is_username, "tamsin_h_mcr", True),
    (v.is_username, "GB_2", True),
    (v.is_username, "sarah.h", True),  # a name and an initial, not a C header
    (v.is_username, "pam_cap.so", False),
    (v.is_username, "HTTP_200_OK", False),
    (v.is_id_number, "06149/12345", True),
    (v.is_id_number, "529.982.247-25", True),
    (v.is_id_number, "debian/patches/fix-1.patch", False),
    (v.is_id_number, "CVE-2023-25652", False),
    (v.is_id_number, "y.find(x) != -1", False),
    (v.is_id_number, "no digits", False),
    (v.is_id_number, "429A43AB-52F2-4714-AA62-077528A12464", False),  # a UUID names a record
    (v.is_id_number, "20130416T092616Z", False),  # a timestamp
    (v.is_id_number, "2013-04-16", False),
    (v.is_id_number, "Closes #10896", False),  # an issue
    (v.is_id_number, "19850612-2398", True),  # a Swedish personnummer: a date and four digits
    (v.is_id_number, "STN-2026-884120", True),
    (v.is_id_number, "5502-34-12", True),  # no date: there is no month 34
    (v.is_id_number, "Fixes: #1234", False),
    (v.is_id_number, "#4821.", False),
    (v.is_street_address, "Schönhauser Allee 112, 10439 Berlin", True),
    (v.is_street_address, "Via Matilda, 8 Piano 7 35026 Croci Di Calenzano (MO)", True),
    (v.is_street_address, "Esplanada Clara Garcia, Tupi B, Machado Verde - RJ", True),
    (v.is_street_address, "Refreshed the patch", False),
    (v.is_street_address, "x = x + 1", False),
    (v.is_street_address, "31.1-1", False),
    (v.is_street_address, "12 rue de la Paix, 75002 Paris", True),
    (v.is_street_address, "via della Spiga 7, 20121 Milano", True),
    (v.is_street_address, "allée des Acacias 3, appartement 12", True),
    (v.is_street_address, "the meeting with the agency moves to Thursday 14 h, room Montmartre", False),
    (v.is_street_address, "grace.okafor@lagosnet.ng,0803 555 7712,Springfield", False),  # a CSV row
    (v.is_street_address, "unser Service ist vom 24.12. bis 01.01. nicht erreichbar, danach wieder", False),
]


@pytest.mark.parametrize(("check", "value", "expected"), CASES,
                         ids=[f"{c.__name__}:{value}" for c, value, _ in CASES])
def test_validators_accept_published_numbers_and_reject_near_misses(check, value, expected):
    assert check(value) is expected


@pytest.mark.parametrize("kind", sorted(ids.NATIONAL_IDS))
def test_every_generated_national_id_passes_its_check(kind):
    rng = random.Random(kind)
    values = [ids.NATIONAL_IDS[kind](rng) for _ in range(300)]
    assert all(v.NATIONAL_ID_VALIDATORS[kind](value) for value in values)
    assert len(set(values)) > 250  # varied, not one number repeated


def test_generated_cards_and_ibans_pass_their_checksums_and_a_changed_digit_fails():
    rng = random.Random(0)
    cards = [ids.card_number(rng) for _ in range(300)]
    assert all(v.luhn_valid(card) for card in cards)
    assert {len(v.digits(card)) for card in cards} == {15, 16}
    countries = ["DE", "GB", "FR", "NL", "IT", "ES", "PL", "SE", "BR", "CH", "TR"]
    ibans = [ids.iban(rng, c) for c in countries for _ in range(30)]
    assert all(v.iban_valid(iban) for iban in ibans)
    # one digit changed breaks the check (Luhn and mod 97 catch every single-digit error)
    flipped = [card[:-1] + str((int(card[-1]) + 1) % 10) for card in cards]
    assert not any(v.luhn_valid(card) for card in flipped)
    flipped_ibans = [iban[:2] + str((int(iban[2]) + 1) % 10) + iban[3:] for iban in ibans]
    assert not any(v.iban_valid(iban) for iban in flipped_ibans)


def test_a_personal_phone_is_drawn_again_while_it_is_a_freephone_number():
    from piilab.data.people import personal_phone

    class Faker:
        numbers = iter(["1-800-555-0199", "0800 123 4567", " +49 30 9018 2245 "])

        def phone_number(self):
            return next(self.numbers)

    assert personal_phone(Faker()) == "+49 30 9018 2245"
