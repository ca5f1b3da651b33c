"""IRC-style chat logs: the bracketed nick that opens a line is its speaker's USERNAME."""

import pytest

from piilab import shapes
from piilab.chat_logs import chat_handles, speakers

LOG = ("<darkstar_99> anyone know why pip keeps failing on the M3 mac?\n"
       "<quietmoth> which python\n"
       "<darkstar_99> 3.13 from homebrew\n"
       "*** Aiste has joined #python\n"
       "<@quietmoth> darkstar_99: try the python.org installer\n")


def test_a_logs_speakers_are_usernames_wherever_the_log_names_them():
    assert speakers(LOG) == ["darkstar_99", "quietmoth"]
    found = [LOG[a:b] for a, b, label in chat_handles(LOG) if label == "USERNAME"]
    # each speaker line, and "darkstar_99:" addressed; "Aiste" never spoke, so the log says nothing of her
    assert found == ["darkstar_99", "quietmoth", "darkstar_99", "quietmoth", "darkstar_99"]


def test_a_nick_inside_an_address_path_or_url_is_left_to_them():
    log = ("<quietmoth> mail me at quietmoth@example.org\n<ana_b> ok quietmoth.\n"
           "<quietmoth> see https://example.org/quietmoth/x or ~/quietmoth.txt\n")
    found = chat_handles(log)
    assert [log[a:b] for a, b, _ in found] == ["quietmoth", "ana_b", "quietmoth", "quietmoth"]
    assert log.index("quietmoth.") in [a for a, _, _ in found]  # "ok quietmoth." names her


def test_timestamps_make_a_conversation_of_speakers_who_speak_once():
    log = "[12:04] <ana> hi all\n[12:05] <rui> hi ana\n"
    assert [log[a:b] for a, b, _ in chat_handles(log)] == ["ana", "rui", "ana"]


@pytest.mark.parametrize("text", [
    "<src> the source file\n<dst> the destination file\n",  # placeholders, each once
    "   <code>   code fragments\n   <constant>   enum values\n   <code>   more\n",  # an indented tag list
    "<li> Added a flag.</li>\n<li> Fixed a bug.</li>\n<ul> <li> Added more.</li>\n",  # HTML
    "<filename> does not exist.\n<filename> is a dangling symlink.\n",  # one "speaker" only
    "<Multi_key> <a> <e> : \"æ\"\n<Multi_key> <o> <e> : \"œ\"\n<dead_acute> <a> : \"á\"\n",  # X11 Compose
])
def test_lists_markup_and_placeholders_are_no_conversation(text):
    assert chat_handles(text) == []


def test_extract_defaults_add_speakers_and_relabel_the_models_name_for_one():
    start = LOG.index("quietmoth")
    out = shapes.combine(LOG, [(start, start + 9, "NAME")], shapes.EXTRACT_MODES)
    assert [(LOG[a:b], label) for a, b, label in out] == [
        ("darkstar_99", "USERNAME"), ("quietmoth", "USERNAME"), ("darkstar_99", "USERNAME"),
        ("quietmoth", "USERNAME"), ("darkstar_99", "USERNAME")]
