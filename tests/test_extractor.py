"""piilab.extractor.Extractor: a model loaded with `piilab extract`'s defaults, from Python."""

from __future__ import annotations

import json
import shutil

import pytest

import piilab.extract
from piilab.cli import main
from piilab.extractor import Extractor
from piilab.pii_prompt import PromptSettings, save_settings
from piilab.second_look import save_threshold
from piilab.shapes import EXTRACT_MODES

TEXT = "Write to jane.doe@example.com or call Jane Doe, card 4111 1111 1111 1111."
ANSWER = "Jane Doe (NAME)\njane.doe (EMAIL)\nJane (PHONE_NUM)"


@pytest.fixture
def trained(tiny_llama_dir, tmp_path, monkeypatch):
    """A model folder as training leaves one (alpaca prompts, two labels, a second look of 0.2)
    whose model always answers ANSWER; the calls' settings are recorded."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    save_settings(PromptSettings(style="alpaca", labels=("NAME", "EMAIL")), folder)
    save_threshold(folder, 0.2)
    calls = []

    def answer(model, tokenizer, prompts, layer, **kwargs):
        calls.append({"prompts": list(prompts), "notes": kwargs["notes"]})
        return [ANSWER] * len(prompts), [], set()

    monkeypatch.setattr(piilab.extract, "decode_answers", answer)
    return folder, calls


def test_load_takes_the_settings_piilab_extract_takes_from_the_folder(trained):
    folder, calls = trained
    finder = Extractor.load(str(folder), device="cpu")
    assert finder.settings.style == "alpaca" and finder.settings.labels == ("NAME", "EMAIL")
    assert finder.second_look == 0.2 and finder.validators == EXTRACT_MODES
    assert Extractor.load(str(folder), device="cpu", second_look=0.0, validators=()).second_look == 0.0


def test_a_call_finds_what_the_command_finds(trained, capsys):
    folder, calls = trained
    [found] = Extractor.load(str(folder), device="cpu")([TEXT])
    assert main(["extract", "--model", str(folder), "--device", "cpu", TEXT]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert found.to_dict()["items"] == printed["items"]
    # the e-mail address grown by `extend`; PHONE_NUM is outside the folder's label set
    assert sorted((i["value"], i["label"]) for i in printed["items"]) == [
        ("Jane Doe", "NAME"), ("jane.doe@example.com", "EMAIL")]
    assert calls[0]["prompts"] == calls[1]["prompts"]
    assert all(call["notes"].threshold == 0.2 for call in calls)  # the folder's second look


def test_prepared_keeps_the_model_prepared_between_calls(trained):
    folder, _ = trained
    finder = Extractor.load(str(folder), device="cpu")
    with finder.prepared() as model:
        assert model is finder.model and hasattr(model, piilab.extract.PREPARED)
        finder([TEXT])
        finder([TEXT])
    assert not hasattr(finder.model, piilab.extract.PREPARED)
