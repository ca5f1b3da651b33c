"""HL7 v2 messages read by their fields: the patient's, next of kin's, guarantor's and insured's."""

import pytest

from piilab import shapes
from piilab.hl7 import hl7_values

def segment(name, fields):
    """A segment with the given fields (by number), the others empty."""
    return "|".join([name] + [fields.get(n, "") for n in range(1, max(fields) + 1)])


MESSAGE = "\r".join([
    r"MSH|^~\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB|ELAB-3|200801011200||ADT^A01|MSG00001|P|2.5",
    "EVN|A01|200801011200",
    "PID|1||4455667^^^GHH^MR~123-45-6789^^^USA^SS||Miller^Paul^One^Jr^Dr||19600101|M|||"
    "555 Flower Street^^Aurora^CO^80011^USA||^PRN^PH^^1^303^5549936~(303)554-1111^WPN^PH^paul@example.org"
    "|||M||ACCT00360397|123-45-6789|S1234567^CO",
    "NK1|1|Miller^Jane|SPO|^^Aurora^CO|(303)554-9936",
    "PV1|1|I|2000^2012^01||||004777^Careful^Adam^A^^^Dr|||||||||||7",
    segment("IN1", {1: "1", 2: "A357", 3: "1234", 4: "BCMD", 5: "PO BOX 1234^^BALTIMORE^MD^21201",
                    16: "Miller^Paul", 36: "PLC4455"}),
])


def found(text):
    return [(text[a:b], label) for a, b, label in hl7_values(text)]


def test_the_patients_next_of_kins_and_insureds_fields_by_their_definition():
    assert found(MESSAGE) == [
        ("4455667", "ID_NUM"), ("123-45-6789", "ID_NUM"),  # PID-3's identifiers, each repetition's ID
        ("Miller^Paul^One", "NAME"),  # family, given, middle: suffix and title stay outside
        ("555 Flower Street^^Aurora^CO^80011", "STREET_ADDRESS"),  # without the country component
        ("1^303^5549936", "PHONE_NUM"), ("(303)554-1111", "PHONE_NUM"), ("paul@example.org", "EMAIL"),
        ("ACCT00360397", "ID_NUM"), ("123-45-6789", "ID_NUM"), ("S1234567", "ID_NUM"),  # account, SSN, licence
        ("Miller^Jane", "NAME"), ("(303)554-9936", "PHONE_NUM"),  # NK1: no street, so no address
        ("Miller^Paul", "NAME"), ("PLC4455", "ID_NUM"),  # IN1: the insured and the policy number
    ]  # nothing of PV1's clinician, MSH's facilities or IN1's insurer and its PO box


def test_the_separators_the_msh_segment_names():
    text = "MSH#*!\\&#APP#FAC\nPID#1##99887766**GHH##Doe*John!Roe*Ann"
    assert found(text) == [("99887766", "ID_NUM"), ("Doe*John", "NAME"), ("Roe*Ann", "NAME")]


@pytest.mark.parametrize("text", [
    "PID is the patient identification segment.",  # prose naming a segment
    "PID 1||4455667^^^GHH^MR||Miller^Paul",  # no field separator after the name
    "XYZ|1||4455667^^^GHH^MR||Miller^Paul",  # a segment that is not read
    "PID|1||12^^^GHH^MR||^^^Jr",  # an ID of two digits, a name of no name parts
])
def test_nothing_outside_the_fields_read(text):
    assert found(text) == []


def test_the_validators_grow_relabel_keep_and_add_field_values():
    name, ssn = MESSAGE.index("Paul^One"), MESSAGE.index("|123-45-6789|S") + 1
    phone = MESSAGE.index("1^303^5549936")
    model = [(name, name + 4, "NAME"), (ssn, ssn + 11, "PHONE_NUM"), (phone, phone + 13, "PHONE_NUM")]
    out = shapes.combine(MESSAGE, model, shapes.EXTRACT_MODES)
    values = [(MESSAGE[a:b], label) for a, b, label in out]
    assert ("Miller^Paul^One", "NAME") in values and ("Paul", "NAME") not in values  # grown to the field
    assert values.count(("123-45-6789", "ID_NUM")) == 2 and ("123-45-6789", "PHONE_NUM") not in values
    assert ("1^303^5549936", "PHONE_NUM") in values  # kept, though not a phone's usual shape
    assert sorted(set(values)) == sorted(set(found(MESSAGE)))  # and the rest added


def test_a_messages_fields_are_read_once_for_all_its_items(monkeypatch):
    calls = []
    monkeypatch.setattr(shapes, "hl7_values", lambda text: calls.append(text) or hl7_values(text))
    text = MESSAGE + "\rNK1|2|Miller^Ann|DAU"  # a text no earlier test cached
    items = [{"value": text[a:b], "label": label, "spans": [{"start": a, "end": b}]}
             for a, b, label in hl7_values(text)]
    out, _ = shapes.on_items(text, items, shapes.EXTRACT_MODES)
    assert len(out) == len({(i["value"], i["label"]) for i in items}) and len(items) > 10
    assert len(calls) <= 2  # once for extend and check of every item, once for complete
