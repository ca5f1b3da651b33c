"""piilab.io: JSON Lines that name the file and line for every line they cannot take."""

from piilab.errors import PiilabError
from piilab.io import numbered_jsonl


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
