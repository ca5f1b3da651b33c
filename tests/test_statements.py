"""MT940 bank statements: the ":25:" field's account, and no span over a field tag."""

import pytest

from piilab import shapes
from piilab.statements import field_tags, over_field_tag, statement_accounts

# An invented statement in the format's usual layout: a German bank code before the account.
STATEMENT = (":20:AUSZUG0042\n:25:76010085/4417730921\n:28C:00042/001\n:60F:C261130EUR1520,00\n"
             ":61:2612011201DR48,90NDDTNONREF\n:86:106?20LASTSCHRIFT STADTWERKE\n"
             ":62F:C261201EUR1471,10\n")


def value(text, span):
    return text[span[0]:span[1]]


def test_the_account_of_the_25_field_without_its_bank_code():
    assert [value(STATEMENT, s) for s in statement_accounts(STATEMENT)] == ["4417730921"]
    assert statement_accounts(STATEMENT)[0][2] == "ID_NUM"


@pytest.mark.parametrize("field, account", [
    (":25:DE44500105175407324931", "DE44500105175407324931"),  # an IBAN, whole
    (":25:COBADEFFXXX/0123456789", "0123456789"),  # a BIC before the slash
    (":25:981204457   ", "981204457"),  # trailing blanks are not the account's
    (":25:NL08DEUT0319809633EUR", "NL08DEUT0319809633"),  # nor the currency after it
])
def test_the_25_fields_usual_forms(field, account):
    text = STATEMENT.replace(":25:76010085/4417730921", field)
    assert [value(text, s) for s in statement_accounts(text)] == [account]


@pytest.mark.parametrize("text", [
    ":25:76010085/4417730921\n",  # one tagged line is not a statement
    "Minutes:\n:20: items\n:25: items\n:30: items\n:40: items\n",  # tags with no account after them
    STATEMENT.replace(":20:AUSZUG0042\n", ":21:NONREF\n"),  # no ":20:" field: not a statement's start
])
def test_no_account_outside_a_statement(text):
    assert statement_accounts(text) == []


def test_a_span_over_a_field_tag_is_dropped_and_one_beside_it_kept():
    line = STATEMENT.index(":61:")
    over = (line + 1, STATEMENT.index("\n", line), "ID_NUM")  # "61:2612011201DR48,90NDDTNONREF"
    beside = (STATEMENT.index("4417730921"), STATEMENT.index("4417730921") + 10, "ID_NUM")
    assert over_field_tag(STATEMENT)(over[0], over[1])
    assert shapes.check(STATEMENT, [over, beside]) == [beside]


def test_tags_are_only_read_in_a_statement():
    prose = "Meeting notes\n:61: is not a tag here\nnor :25: in a sentence"
    assert field_tags(prose) == [] and not over_field_tag(prose)(14, 30)
    assert len(field_tags(STATEMENT)) == 7


def test_complete_adds_the_account_once_where_the_model_missed_it():
    iban = STATEMENT.replace("76010085/4417730921", "DE44500105175407324931")  # a valid IBAN too
    [(start, end, label)] = shapes.complete(iban, [])
    assert (value(iban, (start, end)), label) == ("DE44500105175407324931", "ID_NUM")
    found = (start, end, "ID_NUM")
    assert shapes.complete(iban, [found]) == [found]
