"""piilab.io: JSON Lines that name the file and line for every line they cannot take; folders
replaced whole."""

import pytest

from piilab.errors import PiilabError
from piilab.io import numbered_jsonl, replaced_whole


def test_lines_json_cannot_hold_as_text_are_errors_naming_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    deep, deeper = "[" * 600 + "]" * 600, "[" * 100_000  # json takes the first, not its check
    path.write_text('{"a": 1}\n{"a": "\\ud800"}\n{"a": ' + "9" * 5000 + "}\n" + deeper + "\n" + deep + "\n"
                    '{"\\udc80": 1}\n{"a": 2}\n')
    rows = list(numbered_jsonl(path))
    assert [line for line, _ in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[0][1] == {"a": 1} and rows[6][1] == {"a": 2}
    problems = [str(value) for _, value in rows[1:6]]
    assert all(isinstance(value, PiilabError) for _, value in rows[1:6])
    assert problems[0] == f"{path}: line 2: not valid Unicode (a lone surrogate escape)"
    assert problems[1].startswith(f"{path}: line 3: malformed JSON (an integer of more than 4300 digits)")
    assert problems[2] == f"{path}: line 4: malformed JSON (nested too deeply)"
    assert problems[3] == f"{path}: line 5: malformed JSON (nested too deeply)"
    assert problems[4] == f"{path}: line 6: not valid Unicode (a lone surrogate escape)"


def test_replaced_whole_swaps_a_folder_in_only_when_its_block_ends_well(tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "old.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with replaced_whole(out) as scratch:
            (scratch / "half.json").write_text("{")
            raise RuntimeError("killed half way")
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no scratch left beside it
    assert [p.name for p in out.iterdir()] == ["old.json"]
    with replaced_whole(out) as scratch:
        (scratch / "new.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["new.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
