"""longlora_kit.data: corpus, stdlib text, passkey prompts, tokenizer, packing, hub loaders (offline)."""

import fnmatch
import importlib.resources
import json
import re
import tomllib
from pathlib import Path

import pytest
import torch

from longlora_kit import cli, data
from longlora_kit import tokenizer as tokenizer_module


@pytest.fixture(scope="module")
def tokenizer():
    return data.load_tokenizer()


def test_synthetic_corpus_is_seeded_and_answers_match_records():
    docs = data.synthetic_documents(5, seed=3, tokens_per_document=1000)
    assert docs == data.synthetic_documents(5, seed=3, tokens_per_document=1000)
    assert docs != data.synthetic_documents(5, seed=4, tokens_per_document=1000)
    n_questions = n_echoes = 0
    for doc in docs:
        open_record = None  # (name, key) of the record being asked about
        sentences = re.findall(r"The \w+ key is \d{5}\. Remember it\. \d{5} is the \w+ key\.|What is the \w+ key\? "
                               r"The \w+ key is \d{5}\.|Again, \d{5}\.|The \w+ is \w+\.", doc)
        assert " ".join(sentences) == doc  # nothing but the four kinds of sentence
        for sentence in sentences:
            if m := re.fullmatch(r"The (\w+) key is (\d{5})\. Remember it\. (\d{5}) is the (\w+) key\.", sentence):
                assert m.group(1) == m.group(4) and m.group(2) == m.group(3)
                assert len(set(m.group(2))) == 5 and m.group(2)[0] != "0"  # five different digits
                open_record = (m.group(1), m.group(2))
            elif m := re.fullmatch(r"Again, (\d{5})\.", sentence):
                assert open_record and m.group(1) == open_record[1]
                n_echoes += 1
            elif m := re.fullmatch(r"What is the (\w+) key\? The (\w+) key is (\d{5})\.", sentence):
                assert open_record == (m.group(1), m.group(3)) and m.group(2) == m.group(1)
                n_questions += 1
            else:
                assert re.fullmatch(r"The (\w+) is (\w+)\.", sentence), sentence
    assert n_questions > 10 and n_echoes > 10


def test_approx_tokens_is_exact_on_the_synthetic_corpus(tokenizer):
    doc = data.synthetic_documents(1, seed=0, tokens_per_document=800)[0]
    assert data.approx_tokens(doc) == len(tokenizer(doc)["input_ids"])


@pytest.mark.parametrize("max_distance", [128, 1024])
def test_query_distances_are_controlled(tokenizer, max_distance):
    docs = data.synthetic_documents(8, seed=0, tokens_per_document=4096, max_distance=max_distance)
    distances = [d for doc in docs for d in data.query_distances(tokenizer(doc)["input_ids"], tokenizer)]
    assert len(distances) > 100
    assert min(distances) >= 8                   # the echo inside a record is the nearest mention
    assert max(distances) <= max_distance + 32   # a question waits for the end of the current sentence
    beyond = sum(d > max_distance // 4 for d in distances) / len(distances)
    assert 0.1 < beyond < 0.4                    # log-uniform gaps: ln 4 / ln(max/8) of the questions


def test_random_key_has_five_different_digits():
    import random

    keys = [data.random_key(random.Random(i)) for i in range(200)]
    assert all(len(k) == 5 and len(set(k)) == 5 and k[0] != "0" for k in keys)
    assert len(set(keys)) > 190


def test_spec_validation():
    with pytest.raises(ValueError, match="min_distance"):
        data.synthetic_documents(1, spec=data.SyntheticSpec(min_distance=100, max_distance=10))


def test_stdlib_documents_are_deterministic_and_long():
    a = data.stdlib_documents(max_documents=3)
    assert a == data.stdlib_documents(max_documents=3)
    assert len(a) == 3 and all(len(doc) >= 20_000 for doc in a)
    with pytest.raises(ValueError, match="min_chars"):
        data.stdlib_documents(min_chars=10**12)


def test_training_sources_never_hold_the_real_model_evaluation_text():
    from longlora_kit.real_eval import text_of

    scored = text_of("python")  # _pydecimal.py, scored by `longlora-kit real-eval`
    assert scored in data.stdlib_documents()  # it is a large stdlib file, so only the exclusion keeps it out
    for source in ("stdlib", "mix"):
        assert scored not in data.source_documents(source, n_documents=400)


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_passkey_prompt_has_exact_length_and_key_at_depth(tokenizer, depth):
    prompt = data.passkey_prompt(tokenizer, 300, depth, seed=7)
    assert len(prompt.input_ids) == 300
    text = tokenizer.decode(prompt.input_ids)
    assert text.endswith("What is the pass key? The pass key is")
    where = text.index(f"The pass key is {prompt.key}.") / len(text)
    assert abs(where - depth) < 0.12
    assert text.count(prompt.key) == 2  # the record and its echo


def test_passkey_prompt_errors(tokenizer):
    with pytest.raises(ValueError, match="depth"):
        data.passkey_prompt(tokenizer, 300, 1.5)
    with pytest.raises(ValueError, match="too short"):
        data.passkey_prompt(tokenizer, 10, 0.5)


def test_score_passkey_is_exact_match():
    assert data.score_passkey(" 48215.", "48215")
    assert not data.score_passkey(" 482150", "48215")
    assert not data.score_passkey(" The", "48215")


def test_committed_tokenizer(tokenizer):
    assert len(tokenizer) == data.TOKENIZER_VOCAB_SIZE
    assert tokenizer.eos_token == data.EOS_TOKEN
    ids = tokenizer(" 48215")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[1:] == list("48215")  # single digits
    source = data.stdlib_documents(max_documents=1)[0][:5000]
    assert tokenizer.decode(tokenizer(source)["input_ids"]) == source  # byte-level: lossless


def test_tokenizer_training_is_deterministic():
    texts = data.synthetic_documents(5, seed=0, tokens_per_document=500) + ["def f(x):\n    return x * 2\n"] * 3
    a, b = data.train_tokenizer(texts, vocab_size=300), data.train_tokenizer(texts, vocab_size=300)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_rebuilding_gives_the_committed_tokenizer(tmp_path):
    committed = json.loads((data.DEFAULT_TOKENIZER_DIR / "kit_tokenizer.json").read_text())
    texts = data.tokenizer_training_text(committed["seed"])
    if tokenizer_module.texts_fingerprint(texts) != committed["training_text_sha256"]:
        pytest.skip("this Python's standard library differs from the one the committed tokenizer was built on")
    assert cli.main(["tokenizer", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tokenizer.json").read_text() == (data.DEFAULT_TOKENIZER_DIR / "tokenizer.json").read_text()


def test_the_tokenizer_ships_inside_the_package():
    # a wheel install has no repo around it: the default folder must live under the package itself
    package = Path(data.__file__).parent
    assert Path(data.DEFAULT_TOKENIZER_DIR) == package / "assets" / "tokenizer"
    assert (importlib.resources.files("longlora_kit") / "assets" / "tokenizer" / "tokenizer.json").is_file()
    # ... and pyproject.toml's package-data puts every file of it into the wheel
    with open(package.parents[1] / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["longlora_kit"]
    files = sorted(p.relative_to(package).as_posix() for p in Path(data.DEFAULT_TOKENIZER_DIR).iterdir())
    assert files and all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), files


def test_tokenizer_cli_default_writes_into_the_package():
    args = cli.build_parser().parse_args(["tokenizer"])
    assert Path(args.out) == Path(data.DEFAULT_TOKENIZER_DIR)


def test_missing_tokenizer_says_how_to_build(tmp_path):
    with pytest.raises(ValueError, match="longlora-kit tokenizer"):
        data.load_tokenizer(tmp_path)


def test_split_by_document_is_disjoint_and_prefix_stable():
    train, val = data.split_documents(list(range(100)), val_fraction=0.1)
    assert not set(train) & set(val) and sorted(train + val) == list(range(100))
    _, val_more = data.split_documents(list(range(300)), val_fraction=0.1)
    assert set(val) <= set(val_more)
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_documents([1, 2, 3], 0.0)
    with pytest.raises(ValueError, match="at least 10 documents"):
        data.split_documents([1, 2, 3], 0.1)


def test_pack_joins_with_eos_and_cuts_blocks():
    blocks = data.pack([[1, 2, 3, 4], [5, 6], [7]], block_length=4, eos_id=0)
    assert blocks.tolist() == [[1, 2, 3, 4], [0, 5, 6, 0]]
    assert blocks.dtype == torch.long
    with pytest.raises(ValueError, match="fewer than one block"):
        data.pack([[1]], block_length=8, eos_id=0)


def test_load_splits_and_validation_stream(tokenizer):
    train, val = data.load_splits("synthetic", tokenizer, 20, val_fraction=0.1)
    assert len(train) == 18 and len(val) == 2
    stream = data.validation_stream("synthetic", tokenizer, 20, val_fraction=0.1)
    assert len(stream) == sum(len(v) + 1 for v in val) and stream[len(val[0])] == tokenizer.eos_token_id
    with pytest.raises(ValueError, match="not a source"):
        data.source_documents("wikipedia", 3)


def test_hf_documents_from_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"text": [f"book {i} " * 50 for i in range(6)], "title": [str(i) for i in range(6)]}
    datasets.Dataset.from_dict(rows).save_to_disk(tmp_path / "flat")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "dict")
    assert data.load_hf_documents(str(tmp_path / "flat"), max_documents=4) == rows["text"][:4]
    assert data.load_hf_documents(str(tmp_path / "dict"), split="train") == rows["text"]
    assert data.source_documents(f"hf:{tmp_path / 'flat'}", 2) == rows["text"][:2]
    with pytest.raises(ValueError, match="columns"):
        data.load_hf_documents(str(tmp_path / "flat"), text_field="body")
    with pytest.raises(ValueError, match="splits"):
        data.load_hf_documents(str(tmp_path / "dict"), split="validation")


def test_stream_answers_point_at_the_answer_digits(tokenizer):
    docs = data.tokenize_documents(data.synthetic_documents(3, seed=2), tokenizer)
    stream = data.join_documents(docs, tokenizer.eos_token_id)
    positions, distances = data.stream_answers(docs, tokenizer)
    assert positions.shape == (len(distances), 5) and len(distances) >= 6
    for row, distance in zip(positions.tolist(), distances.tolist()):
        answer = tokenizer.decode(stream[row[0] : row[-1] + 1])
        record = tokenizer.decode(stream[row[0] - distance : row[0] - distance + 5])
        assert answer == record and answer.isdigit()
        before = tokenizer.decode(stream[row[0] - 5 : row[0]])  # a question, an echo, or the record's own echo
        assert before.endswith(("key is ", "Again, ", "Remember it. ")), before
