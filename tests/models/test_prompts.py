import pytest
from tiny import tiny_tokenizer

from piilab.errors import PiilabError
from piilab.models.prompts import PromptFormat, default_format, format_for


def test_chat_format_renders_one_user_turn_and_the_generation_prompt(tokenizer):
    fmt = default_format(tokenizer)
    assert fmt.kind == "chat" and not fmt.add_special_tokens
    text = fmt.render(tokenizer, "Find PII.")
    assert text == "<|im_start|>user\nFind PII.<|im_end|>\n<|im_start|>assistant\n"


def test_plain_format_when_there_is_no_chat_template():
    tok = tiny_tokenizer(chat=False)
    fmt = default_format(tok)
    assert fmt.kind == "plain" and fmt.add_special_tokens
    assert fmt.render(tok, "Find PII.") == "Find PII.\n\nAnswer:\n"
    with pytest.raises(PiilabError, match="no chat template"):
        default_format(tok, "chat")


def test_saved_format_wins_and_round_trips(tmp_path, tokenizer):
    saved = PromptFormat(kind="plain", template="Q: {prompt}\nA:")
    saved.save(tmp_path)
    assert format_for(tokenizer, tmp_path) == saved
    assert format_for(tokenizer, None).kind == "chat"


def test_plain_template_needs_a_prompt_slot():
    with pytest.raises(PiilabError, match="{prompt}"):
        PromptFormat(kind="plain", template="no slot")
