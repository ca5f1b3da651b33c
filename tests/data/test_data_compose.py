"""Composed documents: exact spans, titles and possessives outside NAME, valid checksums, every
genre and structural feature produced, reproducible, and structure groups held out by the split."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from piilab.data import read_records
from piilab.data import validators as v
from piilab.data.build import BuildConfig, build_dataset
from piilab.data.compose import (
    GENRES,
    GROUPS,
    ComposeConfig,
    Writer,
    compose,
    load_genre,
)
from piilab.data.labels import DEFAULT_LABELS
from piilab.data.people import Locale, new_person, vocab
from piilab.errors import PiilabError


@pytest.fixture(scope="module")
def docs():
    return list(compose(ComposeConfig(n=800, seed=5)))


def test_spans_are_exact_sorted_and_trimmed(docs):
    for doc in docs:
        assert all(doc.text[s.start:s.end] == s.value and s.value == s.value.strip() for s in doc.spans)
        assert all(a.end <= b.start for a, b in zip(doc.spans, doc.spans[1:]))
        assert all(f["value"] in doc.text for f in doc.meta["hard_negatives"])
        assert {n["value"] for n in doc.meta["hard_negatives"]}.isdisjoint(s.value for s in doc.spans)


def test_same_seed_same_documents_other_seed_others():
    def run(seed):
        return [(d.id, d.text, d.spans, d.meta) for d in compose(ComposeConfig(n=60, seed=seed))]
    assert run(11) == run(11)
    assert run(11) != run(12)


def test_titles_and_possessives_stay_outside_the_name(docs):
    titles = set(vocab("titles"))
    titled = possessive = 0
    for doc in docs:
        for s in (s for s in doc.spans if s.label == "NAME"):
            assert s.value.split()[0] not in titles and not s.value.endswith(("'s", "'"))
            before = doc.text[:s.start]
            titled += any(before.endswith(t + " ") for t in titles)
            possessive += doc.text.startswith(("'s", "' "), s.end)
    assert titled >= 50 and possessive >= 30


def test_every_genre_label_locale_and_structural_feature_occurs(docs):
    assert {d.meta["genre"] for d in docs} == set(GENRES)
    assert set(Counter(s.label for d in docs for s in d.spans)) == set(DEFAULT_LABELS)
    assert len({d.meta["locale"] for d in docs}) >= 15
    features = Counter(f for d in docs for f in d.meta["features"])
    for feature in ("title", "possessive", "caps", "lower", "first_only", "last_only", "full_name",
                    "username_with_name", "speaker_names", "card", "iban",
                    "address_1_lines", "address_2_lines", "address_3_lines", "address_4_lines"):
        assert features[feature] >= 5, (feature, features[feature])
    assert features["address_5_lines"] >= 1
    assert len([f for f in features if f.startswith("national_id:")]) >= 7
    kinds = Counter(n["kind"] for d in docs for n in d.meta["hard_negatives"])
    assert {"organisation", "place", "product", "work title", "date", "public URL", "order number",
            "ticket number", "invoice number", "cited author", "instructor", "package name", "version",
            "file path", "project name", "code identifier", "code", "CVE id", "issue number",
            "commit id", "organisation e-mail", "organisation phone", "organisation address",
            "organisation website"} <= set(kinds)
    no_pii = sum(not d.spans for d in docs) / len(docs)
    assert 0.05 < no_pii < 0.3


def test_organisations_contact_details_are_hard_negatives_in_a_persons_shape(docs):
    """A desk's e-mail, a hotline, premises: the same shapes as a person's, never labelled."""
    from piilab.data.validators import is_email, is_phone, is_street_address, is_toll_free

    values = {}
    for doc in docs:
        for n in doc.meta["hard_negatives"]:
            values.setdefault(n["kind"], []).append(n["value"])
    assert all(is_email(v) for v in values["organisation e-mail"])
    assert all(is_phone(v) for v in values["organisation phone"])
    assert any(is_toll_free(v) for v in values["organisation phone"])
    assert all(is_street_address(v) for v in values["organisation address"])
    personal_phones = [s.value for d in docs for s in d.spans if s.label == "PHONE_NUM"]
    assert personal_phones and not any(is_toll_free(v) for v in personal_phones)


def test_casing_features_mean_what_they_say(docs):
    for doc in docs:
        names = [s.value for s in doc.spans if s.label == "NAME" and s.value.upper() != s.value.lower()]
        if "caps" in doc.meta["features"]:
            assert any(n == n.upper() for n in names)
        if "lower" in doc.meta["features"]:
            assert any(n == n.lower() for n in names)


def test_transcript_speakers_are_spans_at_the_start_of_their_lines(docs):
    named = [d for d in docs if "speaker_names" in d.meta["features"]]
    assert len(named) >= 30
    for doc in named:
        starts = {s.start: s for s in doc.spans}
        turns = [m for m in re.finditer(r"^(?:\[\d\d:\d\d\] )?([^\n:\[]+): ", doc.text, re.M)]
        spoken = [starts.get(m.start(1)) for m in turns]
        assert any(s is not None and s.label in ("NAME", "USERNAME") for s in spoken)


def test_user_names_beside_real_names():
    docs = [d for d in compose(ComposeConfig(n=400, seed=9, genres=["ticket"]))
            if "username_with_name" in d.meta["features"]]
    assert docs
    for doc in docs:
        pairs = [(a, b) for a, b in zip(doc.spans, doc.spans[1:])
                 if {a.label, b.label} == {"USERNAME", "NAME"} and doc.text[a.end:b.start] in (" (", " (@")]
        assert pairs, doc.text


def test_checksummed_ids_are_valid(docs):
    seen = Counter()
    for doc in docs:
        values = [s.value for s in doc.spans if s.label == "ID_NUM"]
        for feature in doc.meta["features"]:
            if feature == "card":
                assert any(v.luhn_valid(x, range(15, 17)) for x in values)
            elif feature == "iban":
                assert any(v.iban_valid(x) for x in values)
            elif feature.startswith("national_id:") and feature != "national_id:passport":
                assert any(v.NATIONAL_ID_VALIDATORS[feature.split(":")[1]](x) for x in values)
            else:
                continue
            seen[feature] += 1
        for x in values:  # whatever looks like an IBAN is one
            if re.fullmatch(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})+ ?[A-Z0-9]{0,4}", x) and len(x.replace(" ", "")) >= 15:
                assert v.iban_valid(x), x
    assert seen["card"] >= 10 and seen["iban"] >= 10


def test_emails_urls_and_phones_have_their_shapes(docs):
    by_label = {label: [s.value for d in docs for s in d.spans if s.label == label]
                for label in ("EMAIL", "URL_PERSONAL", "PHONE_NUM")}
    assert all(v.is_email(x) for x in by_label["EMAIL"])
    assert all(v.is_url(x) for x in by_label["URL_PERSONAL"])
    assert sum(v.is_phone(x) for x in by_label["PHONE_NUM"]) / len(by_label["PHONE_NUM"]) > 0.97


def test_every_generated_value_passes_its_labels_shape_check(docs):
    """extract's `check` validator drops what lacks its label's shape: it must keep every true value."""
    from piilab.data.validators import is_us_ssn
    from piilab.shapes import _SHAPE_OF

    failing = [(s.label, s.value) for d in docs for s in d.spans if not _SHAPE_OF[s.label](s.value)]
    assert not failing
    # and `check` relabels social security numbers ID_NUM: no other label's value has their shape
    assert not [(s.label, s.value) for d in docs for s in d.spans
                if s.label != "ID_NUM" and is_us_ssn(s.value)]


def test_every_frame_renders_and_every_layout_pool_fills_every_group():
    rng = random.Random(0)
    loc = Locale("en_GB", seed=0)
    for genre_name in GENRES:
        genre = load_genre(genre_name)
        for section in genre.sections:
            frames = genre.frames[section.pool]
            if section.count[0] >= 1:  # a required part: each structure group needs its own frame
                assert len(frames) >= GROUPS, (genre_name, section.pool)
            for _, text in frames:
                w = Writer(rng, genre_name, loc, {k: new_person(rng, loc) for k in "abcd"})
                w.frame(text, me="a", you="b")
                assert all(w.text()[s.start:s.end] == s.value for s in w.spans)


def test_held_out_structure_groups_share_no_frame_with_training(tmp_path):
    build_dataset(BuildConfig(out=str(tmp_path), synthetic=500, generator="compose", test_size=0.2, seed=2))
    train, test = read_records(tmp_path, "train"), read_records(tmp_path, "test")
    train_frames = {f for r in train for f in r["meta"]["frames"]}
    heldout = [r for r in test if r["meta"]["heldout_template"]]
    assert heldout and any(not r["meta"]["heldout_template"] for r in test)
    assert {r["meta"]["template_id"] for r in heldout}.isdisjoint(r["meta"]["template_id"] for r in train)
    heldout_frames = {f for r in heldout for f in r["meta"]["frames"]}
    assert heldout_frames and heldout_frames.isdisjoint(train_frames)
    assert {r["source"] for r in train + test} == {"compose"}


def test_the_generator_is_opt_in_and_checked():
    assert BuildConfig(out="x", synthetic=5).generator == "templates"
    with pytest.raises(PiilabError, match="generator"):
        BuildConfig(out="x", synthetic=5, generator="gpt")
    with pytest.raises(PiilabError, match="locale"):
        list(compose(ComposeConfig(n=1, locales=["xx_XX"])))
    with pytest.raises(PiilabError, match="genre"):
        ComposeConfig(genres=["poetry"])


def test_an_experiment_file_chooses_the_generator_with_the_same_key(tmp_path):
    from importlib import resources

    import yaml

    from piilab import experiment

    raw = yaml.safe_load(resources.files("piilab.configs").joinpath("demo.yaml").read_text())
    assert "generator" not in raw["data"]  # the demo keeps the templates until a model says otherwise
    raw["data"]["generator"] = "compose"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = experiment.stage_configs(experiment.Experiment.from_yaml(path))["data"]
    assert config.generator == "compose"


def test_developers_text_has_technical_negatives_and_its_people_as_spans():
    devlogs = list(compose(ComposeConfig(n=60, seed=2, genres=("devlog",))))
    for doc in devlogs:
        technical = {n["value"] for n in doc.meta["hard_negatives"]}
        # a package name, path or version is never inside a PII span
        assert not any(t in s.value for t in technical for s in doc.spans if len(t) > 3), doc.text
    labels = Counter(s.label for d in devlogs for s in d.spans)
    assert labels["NAME"] and labels["EMAIL"] and labels["USERNAME"]
    assert sum(not d.spans for d in devlogs) >= 10  # release notes without people are common


def test_the_shipped_recipe_uses_every_genre_and_genres_restrict_a_build(tmp_path):
    """pii.yaml composes from every genre (devlog included); --genres restricts a build, from
    either generator's own genres."""
    from importlib import resources

    from piilab import experiment

    path = resources.files("piilab.configs").joinpath("pii.yaml")
    config = experiment.stage_configs(experiment.Experiment.from_yaml(path))["data"]
    assert config.generator == "compose" and config.synthetic_genres is None
    out = tmp_path / "d"
    build_dataset(BuildConfig(out=str(out), synthetic=30, generator="compose",
                              synthetic_genres=["devlog", "chat"], test_size=0.2))
    genres = {r["meta"]["genre"] for split in ("train", "test") for r in read_records(out / f"{split}.jsonl")}
    assert genres == {"devlog", "chat"}
    build_dataset(BuildConfig(out=str(tmp_path / "t"), synthetic=12, synthetic_genres=["chat"],
                              test_size=0.2))  # the templates' genres, as `data synth --genres`
    genres = {r["meta"]["genre"] for split in ("train", "test")
              for r in read_records(tmp_path / "t" / f"{split}.jsonl")}
    assert genres == {"chat"}
    with pytest.raises(PiilabError, match="unknown genre.*devlog"):  # a compose genre only
        build_dataset(BuildConfig(out=str(tmp_path / "u"), synthetic=5, synthetic_genres=["devlog"]))
    assert not (tmp_path / "u").exists()  # refused before the output folder is made


def test_the_same_seed_gives_the_same_documents_in_another_process():
    """Faker builds some lists from sets (its it_IT cities), whose order follows Python's hash
    seed: the documents must not."""
    import subprocess
    import sys

    script = ("import hashlib; from piilab.data.compose import compose, ComposeConfig; "
              "h = hashlib.sha256(); "
              "[h.update(d.text.encode()) for d in compose(ComposeConfig(n=120, seed=0, locales=['it_IT']))]; "
              "print(h.hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)}).stdout
               for seed in (1, 2)}
    assert len(digests) == 1
