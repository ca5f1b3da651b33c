"""Prompt-lookup decoding: exactly plain greedy decoding, in fewer forward passes."""

import pytest
from tiny import tiny_llama, tiny_of_type

from piilab.errors import PiilabError
from piilab.layers.decode import Decoding, generate
from piilab.layers.drafts import Drafter, base_drafter, token_keys
from piilab.layers.lookup import lookup_generate, verify

pytestmark = pytest.mark.usefixtures("one_thread")

PREFIX = "Find the personal information in the text below. Answer: list each item.\n"
TEXTS = ["Jane Doe wrote to jane.doe@example.com about order 55-123.",
         "Call +1 555 010 2000 or visit https://example.org/~jdoe today.",
         "The student Ana Silva lives at 12 Oak Street, Springfield.",
         "My username is cool_cat_42.",
         "Paris.",
         "The quick brown fox jumps over the lazy dog. Jane Doe Jane Doe Jane Doe"]
PROMPTS = [PREFIX + t for t in TEXTS]


def plain(model, tokenizer, prompts, layer=None, **decoding):
    d = Decoding(max_new_tokens=24, **decoding)
    run = generate(model, tokenizer, prompts, [layer] if layer else None, decoding=d,
                   batch_size=1, progress=False, return_details=True)
    return run.token_ids[run.layers[0]]


def test_drafter_copies_what_followed_the_longest_latest_match():
    drafter = Drafter(lambda t: str(t).lstrip("-"))
    drafter.extend([1, 2, 3, 4, 9, 2, 3, 5, 6])
    drafter.extend([7, 2, 3])
    assert drafter.draft(2) == [5, 6]  # (2, 3) last continued with 5 6
    drafter.extend([5, 6])
    assert drafter.draft(3) == [7, 2, 3]  # (3, 5, 6) was followed by 7 2 3
    assert drafter.draft(0) == []
    lone = Drafter(lambda t: t)
    lone.extend([8])
    assert lone.draft(4) == []  # nothing seen before


def test_drafter_matches_a_line_start_token_with_the_spaced_word():
    keys = {10: "Jane", 11: "Jane", 12: "Doe", 13: "wrote"}  # 10 " Jane", 11 "Jane"
    drafter = Drafter(keys.get)
    drafter.extend([10, 12, 13, 11])
    assert drafter.draft(2) == [12, 13]


def test_seeds_win_over_the_shared_start_and_lose_to_the_rows_own_tokens(tokenizer):
    """Extraction seeds "None" + EOS: after "None" the instruction's own next words were drafted."""
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    eos = tokenizer.eos_token_id
    keys = token_keys(tokenizer)
    start = encode("If there is none, write: None\n\nText:\n")
    answer = encode("Paris.\nNone")
    plain_row = base_drafter(keys, start).copy()
    seeded_row = base_drafter(keys, start, [encode("None") + [eos]]).copy()
    plain_row.extend(answer)
    seeded_row.extend(answer)
    assert plain_row.draft(3) == encode("\n\nText:")[:3]
    assert seeded_row.draft(3)[0] == eos  # (decoding cuts a draft after its EOS)
    own = base_drafter(keys, start, [encode("None") + [eos]]).copy()
    own.extend(encode("None of them,None"))  # the row's own "None" was followed by " of"
    assert own.draft(2) == encode(" of them")[:2]


def test_a_guess_drafts_first_where_it_has_one_and_sees_only_the_answer():
    seen = []

    def guess(answer):
        seen.append(list(answer))
        return [7, 7, 7] if answer[-1:] == [5] else None

    base = base_drafter(lambda t: t, [1, 2, 3, 5, 6], guess=guess)
    prompt = base.copy()
    prompt.extend([4, 5])
    assert prompt.draft(2) == [6, 4] and not seen  # no answer yet: looked up, the guess not asked
    row = base.for_row([4, 5], [3])  # the row's prompt, then its answer so far
    assert row.draft(2) == [5, 6] and seen == [[3]]  # the guess had none: looked up
    row.extend([5])
    assert row.draft(2) == [7, 7] and seen[-1] == [3, 5]  # the guess's, cut to k
    twin = row.copy()
    assert twin.draft(1) == [7] and twin.answer_from == row.answer_from


def test_a_drafted_eos_the_model_agrees_with_ends_the_commit():
    chosen = {0: 5, 1: 2, 2: 9}  # the greedy token at each position of the pass
    pick = lambda position, slot: chosen[position]  # noqa: E731
    assert verify(pick, 0, [5, 2, 7], slot=0, eos=[2]) == [5, 2]  # nothing is picked after EOS
    assert verify(pick, 0, [5, 2, 7], slot=0) == [5, 2, 9]


@pytest.mark.parametrize("batch_size", [1, 3, 6])
def test_lookup_equals_plain_greedy_when_most_drafts_are_rejected(tokenizer, batch_size):
    model = tiny_llama(tokenizer, seed=1, initializer_range=0.3)  # varied, rarely copied output
    want = plain(model, tokenizer, PROMPTS)
    run = lookup_generate(model, tokenizer, PROMPTS, decoding=Decoding(max_new_tokens=24),
                          batch_size=batch_size, draft_tokens=4, progress=False)
    assert run.token_ids == want
    assert run.prefix_tokens > 10  # the instruction was shared
    assert 0 < run.accepted < run.drafted / 4  # drafts held, and many more were rejected


@pytest.mark.parametrize("batch_size", [1, 4])
def test_lookup_equals_plain_greedy_when_drafts_hold_in_fewer_passes(tokenizer, batch_size):
    model = tiny_llama(tokenizer, seed=3)  # repeats itself: its own answer drafts it
    want = plain(model, tokenizer, PROMPTS)
    run = lookup_generate(model, tokenizer, PROMPTS, decoding=Decoding(max_new_tokens=24),
                          batch_size=batch_size, draft_tokens=4, progress=False)
    assert run.token_ids == want
    assert run.accepted > 0.9 * run.drafted
    batches = -(-len(PROMPTS) // batch_size)
    plain_passes = batches * (24 - 1)  # every batch has a row of 24 tokens: one pass each after the first
    assert run.passes < 0.6 * plain_passes


@pytest.mark.parametrize("batch_size", [1, 4])
def test_lookup_equals_plain_greedy_whatever_a_guess_drafts(tokenizer, batch_size):
    """A guess drafting tokens the model never gives, and one drafting the very tokens it gives:
    the same answers, in more or fewer passes."""
    model = tiny_llama(tokenizer, seed=1, initializer_range=0.3)
    want = plain(model, tokenizer, PROMPTS)
    decoding = Decoding(max_new_tokens=24)
    wrong = lookup_generate(model, tokenizer, PROMPTS, decoding=decoding, batch_size=batch_size,
                            progress=False, guess=lambda answer: [tokenizer.pad_token_id] * 4)
    assert wrong.token_ids == want and wrong.accepted == 0
    answers = {tuple(ids[:1]): ids for ids in want}  # by first token: the guess knows the rest

    def right(answer):
        ids = answers.get(tuple(answer[:1]))
        return ids[len(answer):] if ids and ids[:len(answer)] == list(answer) else None

    looked = lookup_generate(model, tokenizer, PROMPTS, decoding=decoding, batch_size=batch_size,
                             progress=False)
    guessed = lookup_generate(model, tokenizer, PROMPTS, decoding=decoding, batch_size=batch_size,
                              progress=False, guess=right)
    assert guessed.token_ids == want and guessed.passes < looked.passes


def test_lookup_without_drafts_or_shared_start_is_plain_greedy(tokenizer):
    model = tiny_llama(tokenizer, seed=4)
    want = plain(model, tokenizer, PROMPTS)
    run = lookup_generate(model, tokenizer, PROMPTS, decoding=Decoding(max_new_tokens=24),
                          batch_size=4, draft_tokens=0, share_prefix=False, progress=False)
    assert run.token_ids == want and run.drafted == 0 and run.prefix_tokens == 0


def test_a_given_start_is_the_shared_start_where_every_prompt_begins_with_it(tokenizer):
    model = tiny_llama(tokenizer, seed=4)
    want = plain(model, tokenizer, PROMPTS[:1])
    whole = len(tokenizer(PROMPTS[0])["input_ids"]) - 1  # a lone prompt's common start
    template = tokenizer(PREFIX)["input_ids"][:6]  # the start of the instruction
    broken = template + [tokenizer(PROMPTS[0])["input_ids"][6] + 1]  # the prompt leaves it at its end
    for start, shared in ((template, 6), ([], whole), (broken, 6), ([7, 7, 7], 0)):
        run = lookup_generate(model, tokenizer, PROMPTS[:1], decoding=Decoding(max_new_tokens=24),
                              start=start, progress=False)
        assert run.token_ids == want and run.prefix_tokens == shared


def test_a_prepared_model_keeps_a_few_shared_starts_however_many_texts_it_reads(tokenizer):
    # a text whose first token merges with the template's last one leaves the template early;
    # the shared start stops there too, or each such call would keep its own whole prompt
    from piilab.extract import prepared
    from piilab.layers.lookup import KEPT_PREFIXES, PREFIXES

    model = tiny_llama(tokenizer, seed=4)
    template = tokenizer(PREFIX)["input_ids"]
    broken = template + [7]  # no prompt below holds this token there
    with prepared(model):
        for i, start in enumerate([broken] * 3 + [[]] * (KEPT_PREFIXES + 2)):
            lookup_generate(model, tokenizer, [f"{PREFIX} text number {i} says"], start=start,
                            decoding=Decoding(max_new_tokens=2), progress=False)
            kept = getattr(model, PREFIXES)
            if start:
                assert [len(prefix) for _, prefix in kept] == [len(template)]
        assert len(kept) == KEPT_PREFIXES  # calls without a start share their own prompts': capped


def test_lookup_at_an_exit_layer_with_eos_weight_and_stop(tokenizer):
    model = tiny_llama(tokenizer, seed=5)
    decoding = dict(eos_weight=3.0, stop=("Jane",))
    want = plain(model, tokenizer, PROMPTS, layer=2, **decoding)
    run = lookup_generate(model, tokenizer, PROMPTS, layer=2,
                          decoding=Decoding(max_new_tokens=24, **decoding), batch_size=3,
                          progress=False)
    assert run.token_ids == want


@pytest.mark.parametrize("model_type", ["gpt2", "qwen3", "phi"])
def test_lookup_on_other_architectures(tokenizer, model_type):
    model = tiny_of_type(model_type, tokenizer)
    want = plain(model, tokenizer, PROMPTS)
    run = lookup_generate(model, tokenizer, PROMPTS, decoding=Decoding(max_new_tokens=24),
                          batch_size=6, progress=False)
    assert run.token_ids == want


def test_lookup_refuses_sampling(tokenizer):
    with pytest.raises(PiilabError, match="greedy only"):
        lookup_generate(tiny_llama(tokenizer), tokenizer, PROMPTS,
                        decoding=Decoding(sample=True), progress=False)


@pytest.mark.parametrize("model_type", ["gemma3_text", "mistral", "phi3"])
def test_lookup_on_sliding_windows_is_plain_greedy(tokenizer, model_type):
    """A window of 4 positions, far shorter than the prompts: the window must count positions,
    though rejected drafts leave hidden columns between them (Gemma 3 mixes windowed and full
    layers; Mistral's and Phi-3's every layer is windowed)."""
    overrides = {"sliding_window": 4, "initializer_range": 0.3}
    if model_type == "gemma3_text":
        overrides["layer_types"] = ["sliding_attention", "full_attention", "sliding_attention"]
    model = tiny_of_type(model_type, tokenizer, **overrides)
    want = plain(model, tokenizer, PROMPTS)
    for batch_size, drafts in [(1, 4), (3, 4), (6, 2)]:
        run = lookup_generate(model, tokenizer, PROMPTS, decoding=Decoding(max_new_tokens=24),
                              batch_size=batch_size, draft_tokens=drafts, progress=False)
        assert run.token_ids == want, (batch_size, drafts)
    assert run.drafted > 0 and 0 < run.accepted < run.drafted  # hidden columns were left


def test_lookup_with_grouped_key_value_heads_is_plain_greedy_and_restores_the_environment(tokenizer, monkeypatch):
    """SmolLM2 groups 3 key/value heads under 9 query heads; on a CPU lookup lets SDPA handle the
    groups (no copied cache), with plain decoding's answers."""
    import os

    from piilab.layers import attention, lookup

    monkeypatch.delenv(attention._FORCE_GQA, raising=False)
    seen = []
    real = lookup._decode_stream

    def spy(*args, **kwargs):
        seen.append(os.environ.get(attention._FORCE_GQA))
        return real(*args, **kwargs)

    monkeypatch.setattr(lookup, "_decode_stream", spy)
    model = tiny_llama(tokenizer, seed=2, num_attention_heads=4, num_key_value_heads=1)
    want = plain(model, tokenizer, PROMPTS)
    run = lookup_generate(model, tokenizer, PROMPTS, decoding=Decoding(max_new_tokens=24),
                          batch_size=3, progress=False)
    assert run.token_ids == want
    assert seen == ["1"] and attention._FORCE_GQA not in os.environ


@pytest.mark.parametrize(("seed", "eos_weight"), [(1, 10.0), (3, 2.0)])
def test_lookup_refills_finished_rows_with_waiting_prompts(tokenizer, monkeypatch, seed, eos_weight):
    """Continuous batching: waiting prompts join rows that are mid-answer, whose cache may be longer
    or shorter than theirs, and every answer is still plain greedy decoding's."""
    from piilab.layers import lookup

    joins = []
    real = lookup._join

    def spy(cache, mask, other, other_mask):
        joins.append((mask.shape[1], other_mask.shape[1]))
        return real(cache, mask, other, other_mask)

    monkeypatch.setattr(lookup, "_join", spy)
    model = tiny_llama(tokenizer, seed=seed, initializer_range=0.3)
    prompts = PROMPTS + [PREFIX + "A longer text about nothing much. " * 6 + "Jane Doe, 12 Oak Street."]
    decoding = dict(eos_weight=eos_weight)  # answers of 1 to 24 tokens: rows end at different steps
    want = plain(model, tokenizer, prompts, **decoding)
    run = lookup_generate(model, tokenizer, prompts, decoding=Decoding(max_new_tokens=24, **decoding),
                          batch_size=4, progress=False)
    assert run.token_ids == want
    assert len({len(ids) for ids in want}) > 3
    assert joins  # prompts joined a batch in flight


def test_both_engines_look_at_the_load_again_as_they_go(tokenizer, monkeypatch):
    from piilab import runtime

    looks = []
    monkeypatch.setattr(runtime, "look_again", lambda: looks.append(1))
    model = tiny_llama(tokenizer, seed=3)
    generate(model, tokenizer, PROMPTS[:3], decoding=Decoding(max_new_tokens=4), batch_size=1, progress=False)
    assert len(looks) == 3  # one per batch
    looks.clear()
    run = lookup_generate(model, tokenizer, PROMPTS[:3], decoding=Decoding(max_new_tokens=8),
                          batch_size=2, draft_tokens=4, progress=False)
    assert len(looks) >= run.passes > 0  # one per pass (and one per admission round)


@pytest.mark.parametrize("windowed", [False, True])
def test_a_long_stream_packs_its_cache_and_stays_plain_greedy(tokenizer, monkeypatch, windowed):
    """Continuous batching over many prompts: every pass leaves hidden columns (rejected drafts,
    ended rows), so the cache is packed as it goes, and stays as wide as its rows need (masks by
    column, or by position where Gemma 3's windows count positions)."""
    from piilab.layers import cache

    model = tiny_llama(tokenizer, seed=1, initializer_range=0.3)  # drafts mostly rejected
    if windowed:
        model = tiny_of_type("gemma3_text", tokenizer, sliding_window=4, initializer_range=0.3,
                             layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    prompts = [PREFIX + f"Note {i}: " + TEXTS[i % len(TEXTS)] for i in range(36)]  # all distinct
    want = plain(model, tokenizer, prompts)
    longest = max(len(tokenizer(p).input_ids) for p in prompts) + 24 + 4  # prompt, answer, drafts

    def widest(pack_when_wider: float) -> int:
        monkeypatch.setattr(cache, "PACK_WHEN_WIDER", pack_when_wider)
        run = lookup_generate(model, tokenizer, prompts, decoding=Decoding(max_new_tokens=24),
                              batch_size=2, progress=False)
        assert run.token_ids == want, pack_when_wider
        return run.widest_cache

    assert widest(2) <= 2 * longest + 5  # the default
    assert widest(1) <= longest + 5  # packed at every pass that left a hidden column
    assert widest(10**6) > 2 * longest + 5  # never packed: the stream's passes pile up


def test_calls_on_one_model_from_two_threads_take_turns(tokenizer):
    """Decoding swaps the model's blocks while it runs (an exit layer), so a second thread's call
    waits for the first to end (arch.one_at_a_time) instead of running on a half-swapped model."""
    import threading
    import time

    model = tiny_llama(tokenizer).eval()
    alone = {layer: lookup_generate(model, tokenizer, PROMPTS[:2], layer=layer, progress=False).texts
             for layer in (2, 4)}
    passes, results = [], {}
    inside, release = threading.Event(), threading.Event()

    def first_block(module, args):
        name = threading.current_thread().name
        passes.append(name)
        if name == "first":
            inside.set()
            release.wait(10)

    hook = model.model.layers[0].register_forward_pre_hook(first_block)
    calls = {name: threading.Thread(name=name, target=lambda layer=layer, name=name: results.update(
        {name: lookup_generate(model, tokenizer, PROMPTS[:2], layer=layer, progress=False).texts}))
        for name, layer in (("first", 2), ("second", 4))}
    try:
        calls["first"].start()
        assert inside.wait(10)
        calls["second"].start()
        time.sleep(0.5)  # ample time for the second call to reach the model, were it let in
        assert "second" not in passes
    finally:
        release.set()
        for call in calls.values():
            call.join(30)
        hook.remove()
    assert passes.index("second") > max(i for i, name in enumerate(passes) if name == "first")
    assert results == {"first": alone[2], "second": alone[4]}
