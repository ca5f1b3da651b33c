"""Dedup and splits: no document or held-out template on both sides, fractions, reproducibility."""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest

from piilab.data.build import BuildConfig, build_dataset
from piilab.data.records import Document
from piilab.data.split import (
    Deduper,
    HashSet,
    SplitPlanner,
    group_of,
    hash64,
    mix_count,
    normalize_for_dedup,
)
from piilab.errors import PiilabError


def test_dedup_names_exact_and_near_duplicates():
    dedup = Deduper()
    assert dedup.check("Call Jo, now!") is None
    assert dedup.check("Call Jo, now!") == Deduper.EXACT
    assert dedup.check("call   JO now") == Deduper.NEAR
    assert dedup.check("Call Jo later") is None
    assert normalize_for_dedup("Ｃａｌｌ  Jo—now…") == normalize_for_dedup("call jo now") == "call jo now"


def test_hash_set_spills_to_its_sorted_array():
    keys = [random.Random(0).getrandbits(64) for _ in range(1)] + list(range(1, 300, 3))
    hashes = HashSet(buffer=16)
    assert all(hashes.add(k) for k in keys)
    assert len(hashes) == len(keys) and all(k in hashes for k in keys)
    assert not any(hashes.add(k) for k in keys) and 2 not in hashes


def test_group_of_each_split_mode():
    doc = Document("d1", "t", [], "synthetic", {"template_id": "email-01", "site": "A"})
    assert group_of(doc, "auto") == ("template", "synthetic\x00email-01")
    assert group_of(doc, "document") == ("group", "d1")
    assert group_of(doc, "field:site") == ("group", "field:site\x00A")
    assert group_of(Document("d2", "t", [], "kaggle"), "template") == ("group", "d2")
    with pytest.raises(PiilabError):
        group_of(doc, "random")


def test_planner_sends_whole_groups_and_about_the_test_size():
    planner = SplitPlanner()
    for i in range(1000):
        planner.add("kaggle", "group", hash64(f"g{i // 4}"), hash64(f"d{i}"), 1)
    plan = planner.plan(test_size=0.2, seed=0)
    assert 190 <= plan.records["test"] <= 210
    sides = defaultdict(set)
    for i in range(1000):
        sides[i // 4].add(plan.side(hash64(f"g{i // 4}"), hash64(f"d{i}"))[0])
    assert all(len(s) == 1 for s in sides.values())
    other = planner.plan(test_size=0.2, seed=1)
    assert other.test_groups != plan.test_groups
    assert planner.plan(test_size=0.2, seed=0).test_groups == plan.test_groups


def test_mix_count_makes_the_fraction_of_the_split():
    assert mix_count(900, 0.1) == 100
    assert mix_count(10, 0.0) == 0
    with pytest.raises(PiilabError):
        mix_count(10, 1.0)


def read_split(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def synthetic_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    card = build_dataset(BuildConfig(out=str(out), synthetic=400, test_size=0.2, seed=5, max_chars=120, overlap=30))
    return out, card


def test_no_document_or_heldout_template_on_both_sides(synthetic_build):
    out, card = synthetic_build
    train, test = read_split(out / "train.jsonl"), read_split(out / "test.jsonl")
    assert any(r["meta"]["n_windows"] > 1 for r in train + test)  # windows exist, so the test has teeth
    train_docs = {r["meta"]["doc_id"] for r in train}
    test_docs = {r["meta"]["doc_id"] for r in test}
    assert not train_docs & test_docs
    heldout = {r["meta"]["template_id"] for r in test if r["meta"]["heldout_template"]}
    seen = {r["meta"]["template_id"] for r in test if not r["meta"]["heldout_template"]}
    train_templates = {r["meta"]["template_id"] for r in train}
    assert heldout and seen, "test needs both held-out and seen templates"
    assert not heldout & train_templates
    assert seen <= train_templates
    assert all("heldout_template" not in r["meta"] for r in train)
    assert card["splits"]["test"]["heldout_template"] == {
        "false": sum(not r["meta"]["heldout_template"] for r in test),
        "true": sum(r["meta"]["heldout_template"] for r in test)}
    documents = card["splits"]["test"]["documents"] + card["splits"]["train"]["documents"]
    assert 0.15 < card["splits"]["test"]["documents"] / documents < 0.25


def test_split_by_document_keeps_windows_together(tmp_path):
    card = build_dataset(BuildConfig(out=str(tmp_path), synthetic=200, split_by="document", test_size=0.3,
                                     max_chars=80, overlap=20))
    train, test = read_split(tmp_path / "train.jsonl"), read_split(tmp_path / "test.jsonl")
    assert not {r["meta"]["doc_id"] for r in train} & {r["meta"]["doc_id"] for r in test}
    assert all("heldout_template" not in r["meta"] for r in test)
    assert card["config"]["split_by"] == "document"


def test_same_inputs_and_seed_same_files(tmp_path, synthetic_build):
    out, card = synthetic_build
    again = build_dataset(BuildConfig(out=str(tmp_path), synthetic=400, test_size=0.2, seed=5, max_chars=120, overlap=30))
    assert again["splits"]["train"]["sha256"] == card["splits"]["train"]["sha256"]
    assert again["splits"]["test"]["sha256"] == card["splits"]["test"]["sha256"]


def test_length_statistics_stay_exact_where_they_can_past_the_reservoir():
    from piilab.data.card import Lengths as _Lengths

    values = list(range(30_000))
    random.Random(0).shuffle(values)
    lengths = _Lengths(seed=0)
    for v in values:
        lengths.add((v, 2 * v, 1))
    summary = lengths.summary()
    assert summary["text_chars"]["min"] == 0 and summary["text_chars"]["max"] == 29_999
    assert summary["text_chars"]["mean"] == 14_999.5 and summary["prompt_chars"]["mean"] == 29_999.0
    assert abs(summary["text_chars"]["p50"] - 15_000) < 600  # from the 10,000-value reservoir
    assert summary["completion_chars"] == {"n": 30_000, "min": 1, "mean": 1.0, "p50": 1.0, "p95": 1.0, "max": 1}
