"""Copy-constrained decoding: whatever the model prefers, an answer copies the text and the label set."""

import random
import re

import pytest
import torch
from tiny import tiny_llama

from piilab.data.answer import parse_answer, parse_answer_counted
from piilab.data.answer_grammar import AnswerGrammar
from piilab.errors import PiilabError
from piilab.layers.constrain import token_bytes
from piilab.layers.decode import Decoding, generate

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Jane Doe wrote to jane.doe@example.com about order 55-123.\nCall +1 555 010 2000 today."
LABELS = ("NAME", "EMAIL", "PHONE_NUM")
CUE = " Answer:"


def scripted(tokenizer, answer: str, seed: int = 0):
    """A tiny llama whose greedy continuation of any prompt ending in CUE is `answer`, then EOS.

    Each token of the chain gets a basis vector as its embedding, and the token after it an
    unembedding row along that vector, so every step's winner is the chain's next token by a
    margin of about 170 logits, at every exit layer (the blocks' output is small beside it).
    """
    model = tiny_llama(tokenizer, seed=seed, tie_word_embeddings=False)
    chain = [tokenizer.encode(CUE)[-1], *tokenizer.encode(answer), tokenizer.eos_token_id]
    assert len(set(chain[:-1])) == len(chain) - 1 <= model.config.hidden_size
    with torch.no_grad():
        embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        for j, (token, successor) in enumerate(zip(chain, chain[1:])):
            embed[token] = 0.0
            embed[token, j] = 10.0
            head[successor, j] = 30.0
    return model


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def assert_copies(answer: str, text: str, labels=LABELS) -> None:
    """Every item of the answer is a span of the text with a label of the set, and the whole
    answer is a prefix the automaton allows."""
    grammar, state = AnswerGrammar(text, labels), None
    state = grammar.advance(grammar.start(), answer.encode("utf-8"))
    assert state is not None, answer
    for value, label in parse_answer(answer):
        assert label in labels and collapse(value) in collapse(text), (value, label)


def prompt(text: str) -> str:
    return f"Find the personal information in the text below. {text}{CUE}"


def decode(model, tokenizer, texts, layers=(4,), constrained=True, labels=LABELS, **decoding):
    decoding = Decoding(**{"max_new_tokens": 30, **decoding})
    answers = [(t, labels) for t in texts] if constrained else None
    return generate(model, tokenizer, [prompt(t) for t in texts], list(layers), decoding=decoding,
                    answers=answers, progress=False, batch_size=4)


@pytest.mark.parametrize("preferred,why", [
    ("Paris (NAME)", "a value absent from the text"),
    ("Jane (USERNAME)", "a label outside the set"),
    ("Jane Doe Paris (NAME)", "a copy that leaves the text midway"),
])
def test_an_answer_never_copies_what_is_not_there_even_when_the_model_prefers_it(
        tokenizer, preferred, why):
    model = scripted(tokenizer, preferred)
    free = decode(model, tokenizer, [TEXT], constrained=False)[4][0]
    assert free == preferred  # the model does prefer the invalid answer
    first = parse_answer(free)[0]
    assert first[1] not in LABELS or collapse(first[0]) not in collapse(TEXT)
    constrained = decode(model, tokenizer, [TEXT])[4][0]
    assert constrained != free
    assert_copies(constrained, TEXT)


def test_an_answer_the_model_already_prefers_is_left_as_it_is(tokenizer):
    for preferred in ("Jane Doe (NAME)", "None"):
        model = scripted(tokenizer, preferred)
        assert decode(model, tokenizer, [TEXT])[4] == [preferred]
        assert decode(model, tokenizer, [TEXT], constrained=False)[4] == [preferred]


def test_a_label_outside_the_set_is_replaced_by_one_inside_it(tokenizer):
    model = scripted(tokenizer, "Jane Doe (USERNAME)")
    answer = decode(model, tokenizer, [TEXT])[4][0]
    assert answer.startswith("Jane Doe (")  # the valid part is the model's own
    items, _ = parse_answer_counted(answer)
    assert items[0][0] == "Jane Doe" and all(label in LABELS for _, label in items)


def test_batches_exit_layers_and_free_rows_together(tokenizer):
    model = scripted(tokenizer, "Paris (NAME)")
    texts = [TEXT, "Ana Silva lives at 12 Oak Street, Springfield.", "The fox."]
    together = decode(model, tokenizer, texts, layers=(2, 4))
    for layer in (2, 4):
        assert together[layer] == [decode(model, tokenizer, [t], layers=(layer,))[layer][0]
                                   for t in texts]  # batched equals one by one
        for text, answer in zip(texts, together[layer]):
            assert_copies(answer, text)
    # a prompt without a rule (an instruction row) decodes free beside constrained ones
    mixed = generate(model, tokenizer, [prompt(t) for t in texts[:2]], [4],
                     decoding=Decoding(max_new_tokens=30), answers=[(TEXT, LABELS), None],
                     progress=False)
    assert mixed[4][1] == "Paris (NAME)"
    assert_copies(mixed[4][0], TEXT)


def test_sampling_is_constrained_too_and_stays_seeded(tokenizer):
    model = scripted(tokenizer, "Paris (USERNAME)")
    original = dict(sample=True, top_k=5, temperature=0.1, eos_weight=2.0, seed=3)
    first = decode(model, tokenizer, [TEXT, TEXT], layers=(3, 4), **original)
    assert first == decode(model, tokenizer, [TEXT, TEXT], layers=(3, 4), **original)
    for answers in first.values():
        for answer in answers:
            assert_copies(answer, TEXT)


def test_a_bad_number_of_rules_is_refused(tokenizer):
    model = scripted(tokenizer, "None")
    with pytest.raises(PiilabError, match="1 answer constraints for 2 prompts"):
        generate(model, tokenizer, [prompt(TEXT)] * 2, [4], answers=[(TEXT, LABELS)])


@pytest.mark.parametrize("seed", range(4))
def test_random_models_on_random_texts_only_ever_copy(tokenizer, seed):
    """Property: a random model (wide init, so it writes varied tokens) on random texts."""
    rng = random.Random(seed)
    words = ["Jane", "Doe", "Ana", "Silva", "12", "Oak", "Street", "jane.doe@example.com", "+1",
             "555", "Zoë", "Müller", "order", "55-123", "today", "(", ")", "NAME"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(3)]
    labels = tuple(rng.sample(LABELS, 2))
    model = tiny_llama(tokenizer, seed=seed, initializer_range=0.3)
    free = decode(model, tokenizer, texts, layers=(2, 4), constrained=False, labels=labels)
    constrained = decode(model, tokenizer, texts, layers=(2, 4), labels=labels)
    for layer in (2, 4):
        for text, answer in zip(texts, constrained[layer]):
            assert_copies(answer, text, labels)
    assert constrained != free  # free decoding of a random model does not copy


def test_token_bytes_match_what_the_tokenizer_decodes(tokenizer):
    table = token_bytes(tokenizer)
    assert len(table) == len(tokenizer) and table[tokenizer.eos_token_id] is None
    ids = tokenizer.encode("Schönhauser Allee, Zoë")
    assert b"".join(table[i] for i in ids).decode("utf-8") == "Schönhauser Allee, Zoë"


def test_a_sentencepiece_style_tokenizer_is_read_and_constrained(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    raw.train_from_iterator([TEXT, "Answer: None NAME EMAIL PHONE_NUM ( ) Find the text below."],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"],
                                                show_progress=False))
    sp = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="<unk>",
                                 pad_token="</s>")
    table = token_bytes(sp)
    assert table[sp.convert_tokens_to_ids("▁Jane")] == b" Jane"
    model = tiny_llama(sp, seed=1, initializer_range=0.3)
    answer = generate(model, sp, [prompt(TEXT)], [4], decoding=Decoding(max_new_tokens=20),
                      answers=[(TEXT, LABELS)], progress=False)[4][0]
    assert_copies(answer, TEXT)


def test_a_tokenizer_whose_tokens_cannot_be_read_is_refused():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.decoder = decoders.WordPiece()  # "##ing" joins the word before it: no bytes of its own
    raw.train_from_iterator([TEXT] * 3, trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[UNK]", "[SEP]"], show_progress=False))
    wp = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", eos_token="[SEP]")
    with pytest.raises(PiilabError, match="--free-decoding"):
        token_bytes(wp)


@pytest.mark.parametrize("seed,preferred", [(0, None), (1, None), (0, "Paris (NAME)"),
                                            (0, "Jane Doe Paris (NAME)")])
def test_prompt_lookup_gives_constrained_generates_answers(tokenizer, seed, preferred):
    """Drafts are checked against the constrained choice, position by position: the answers are
    those of constrained plain decoding, for random models and for one that prefers invalid ones."""
    from piilab.layers.lookup import lookup_generate

    rng = random.Random(seed)
    words = ["Jane", "Doe", "wrote", "Paris", "jane.doe@example.com", "+1", "555", "010", "(NAME)"]
    texts = [TEXT] + [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(4)]
    model = (scripted(tokenizer, preferred) if preferred
             else tiny_llama(tokenizer, seed=seed, initializer_range=0.3))
    want = decode(model, tokenizer, texts)[4]
    run = lookup_generate(model, tokenizer, [prompt(t) for t in texts], layer=4,
                          decoding=Decoding(max_new_tokens=30), batch_size=3, progress=False,
                          answers=[(t, LABELS) for t in texts])
    assert run.texts == want
    for text, answer in zip(texts, run.texts):
        assert_copies(answer, text)
    if preferred:
        assert run.accepted > 0  # the copy was drafted from the text and kept


def test_prompt_lookup_decodes_a_row_without_a_rule_free_beside_constrained_ones(tokenizer):
    from piilab.layers.lookup import lookup_generate

    model = scripted(tokenizer, "Paris (NAME)")
    prompts = [prompt(TEXT), prompt("Ana Silva lives at 12 Oak Street, Springfield.")]
    rules = [(TEXT, LABELS), None]
    want = generate(model, tokenizer, prompts, [4], decoding=Decoding(max_new_tokens=30),
                    answers=rules, progress=False)[4]
    run = lookup_generate(model, tokenizer, prompts, layer=4, decoding=Decoding(max_new_tokens=30),
                          progress=False, answers=rules)
    assert run.texts == want
    assert run.texts[1] == "Paris (NAME)"  # free: the scripted answer, though Paris is absent
    assert_copies(run.texts[0], TEXT)
