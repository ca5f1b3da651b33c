"""benchmarks/recipes.py: each recipe's figures are the mean and range over its trainings' saved
answers, held half apart from the whole set, and a training without answers is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

from piilab.errors import PiilabError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "recipes.py"
# ids chosen by sha1: "t-1" and "t-5" are in the held half, "t-0" and "t-4" in the probe half
TEXTS = [("t-1", "Call Ana Lima today.", [("NAME", "Ana Lima")]),
         ("t-0", "Mail bo.ek@example.org now.", [("EMAIL", "bo.ek@example.org")]),
         ("t-4", "No one is named here.", []),
         ("t-5", "The report is due on Friday.", [])]


@pytest.fixture(scope="module")
def recipes():
    return load_script("recipes_benchmark", SCRIPT)


def spans(text, pairs):
    return [{"start": text.index(v), "end": text.index(v) + len(v), "label": label, "value": v} for label, v in pairs]


def write_training(folder: Path, found: dict[str, list[tuple[str, str]]]) -> Path:
    rows = [{"id": i, "spans": [[s["start"], s["end"], s["label"]] for s in spans(text, found.get(i, []))]}
            for i, text, _ in TEXTS]
    (folder / "toy").mkdir(parents=True)
    (folder / "toy" / "predictions-piilab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_recipe_shows_the_mean_and_range_of_its_trainings(recipes, tmp_path):
    assert [recipes.is_held(i) for i, _, _ in TEXTS] == [True, False, False, True]
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps({"id": i, "source": "toy", "text": t, "spans": spans(t, g)}) + "\n"
                                               for i, t, g in TEXTS))
    perfect = write_training(tmp_path / "a", {"t-1": [("NAME", "Ana Lima")], "t-0": [("EMAIL", "bo.ek@example.org")]})
    # misses the held name and reads a weekday in a PII-free held text as one: held F1 0, whole
    # 0.5, 1 item in 2 PII-free texts
    poor = write_training(tmp_path / "b", {"t-0": [("EMAIL", "bo.ek@example.org")],
                                           "t-5": [("NAME", "Friday")]})
    rows = recipes.recipe_table({"one": [perfect], "two": [perfect, poor]}, ("toy",), tmp_path)
    assert rows[0] == "| recipe (trainings) | toy held F1 | toy F1 | toy items |"
    assert rows[2] == "| one (1) | 1.000 | 1.000 | 0.0 |"
    assert rows[3] == "| two (2) | 0.500 [0.000, 1.000] | 0.750 [0.500, 1.000] | 25.0 [0.0, 50.0] |"


def test_a_training_without_answers_for_a_set_is_named(recipes, tmp_path):
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps({"id": i, "source": "toy", "text": t, "spans": spans(t, g)}) + "\n"
                                               for i, t, g in TEXTS))
    with pytest.raises(PiilabError, match="nowhere/toy/predictions-piilab.jsonl: no saved answers"):
        recipes.recipe_table({"one": [tmp_path / "nowhere"]}, ("toy",), tmp_path)
    assert recipes.main(["no-equals-sign"]) == 2


def test_validators_are_extracts_unless_named(recipes, tmp_path, capsys):
    """A bare address block is added by the `postal` mode only, and an unknown mode is an error."""
    text = "Hauptstraße 48a\n71032 Böblingen"
    (tmp_path / "toy.jsonl").write_text(json.dumps({"id": "t-1", "source": "toy", "text": text, "spans": [
        {"start": 0, "end": len(text), "label": "STREET_ADDRESS", "value": text}]}) + "\n")
    (tmp_path / "a" / "toy").mkdir(parents=True)
    (tmp_path / "a" / "toy" / "predictions-piilab.jsonl").write_text(json.dumps({"id": "t-1", "spans": []}) + "\n")
    assert recipes.recipe_table({"one": [tmp_path / "a"]}, ("toy",), tmp_path)[2] == "| one (1) | 0.000 | 0.000 | 0.0 |"
    with_postal = recipes.recipe_table({"one": [tmp_path / "a"]}, ("toy",), tmp_path,
                                       modes=("check", "postal"))
    assert with_postal[2] == "| one (1) | 1.000 | 1.000 | 0.0 |"
    assert recipes.main([f"one={tmp_path / 'a'}", "--validators", "check,zip"]) == 2
    assert "unknown zip" in capsys.readouterr().err
