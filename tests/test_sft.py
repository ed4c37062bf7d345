"""Long-instruction SFT: masking, padded S2 batches, the padding rule, bad data, prompts, the run."""

import json

import pytest
import torch
import torch.nn.functional as F

from longlora_kit import s2attn, sft
from longlora_kit.config import TrainConfig, validate
from longlora_kit.data import load_tokenizer
from longlora_kit.models import build_model, tiny_config
from longlora_kit.sft import (
    IGNORE,
    INST_TEMPLATE,
    collate,
    encode_example,
    encode_examples,
    hidden_states,
    masked_lm_loss,
    padded_length,
    train_sft,
    with_chat_template,
)
from longlora_kit.sft_data import BadExample, load_examples, parse_record, parse_records
from longlora_kit.sft_eval import accuracy_grid, exact_match

G = 8  # the run's group size in these tests (seq_len 32, ratio 1/4)


def tiny(attention="s2_attn"):
    model = build_model(tiny_config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    s2attn.register()
    model.set_attn_implementation(attention)
    return model.train()  # S2 runs in training mode (no dropout in the tiny Llama)


def samples(lengths, seed=0):
    """Random (ids, labels) samples: the first half of each is prompt (-100), the rest answer."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(1, 64, (n,), generator=g).tolist()
        out.append((ids, [IGNORE] * (n // 2) + ids[n // 2:]))
    return out


def logits_and_grads(model, batch):
    model.zero_grad()
    logits = model.lm_head(hidden_states(model, batch))  # (B, L, V)
    total, _ = masked_lm_loss(model, batch, chunk=5)
    total.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


# ------------------------------------------------------------------------------------------ masking

def test_masked_positions_carry_no_loss_brute_force():
    model, batch = tiny("sdpa"), collate(samples([11, 6]), pad_id=0, group_size=G)
    total, count = masked_lm_loss(model, batch, chunk=3)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected, n = 0.0, 0
    for b in range(2):
        for t in range(batch.input_ids.shape[1] - 1):  # position t predicts token t+1
            if batch.labels[b, t + 1] != IGNORE:
                expected = expected - torch.log_softmax(logits[b, t], -1)[batch.labels[b, t + 1]]
                n += 1
    assert count.item() == n == (11 - 11 // 2) + (6 - 6 // 2)  # every answer token, no prompt or padding one
    assert torch.allclose(total, expected, atol=1e-4)


def test_prompt_and_padding_get_no_gradient_through_the_loss():
    model, batch = tiny(), collate(samples([9, 20]), pad_id=0, group_size=G)
    hidden = hidden_states(model, batch).detach().requires_grad_(True)
    logits = model.lm_head(hidden)
    targets = batch.labels[:, 1:]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 64), targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    loss.backward()
    scored = torch.zeros_like(batch.labels, dtype=torch.bool)
    scored[:, :-1] = targets != IGNORE  # positions whose prediction is scored
    assert hidden.grad[~scored].abs().max() == 0 and hidden.grad[scored].abs().sum(-1).min() > 0


# --------------------------------------------------------------------------- padded S2 batch vs alone

@pytest.mark.parametrize("variant", ["s2_attn", "s2_attn_paper"])
def test_padded_batch_equals_samples_alone_at_the_batch_length(variant):
    """Forward logits on real positions and gradients: rows never mix, padding is never seen (both variants)."""
    lengths = [13, 30, 5]  # 13 and 30: multiples of nothing; 5: three of its four groups are all padding
    model, data = tiny(variant), samples(lengths)
    batch = collate(data, pad_id=0, group_size=G)
    assert batch.input_ids.shape == (3, 32)
    logits, grads = logits_and_grads(model, batch)
    alone_grads = None
    for row, sample in enumerate(data):
        one = collate([sample], pad_id=0, group_size=G, length=32)
        one_logits, one_grads = logits_and_grads(model, one)
        n = lengths[row]
        assert torch.allclose(logits[row, :n], one_logits[0, :n], atol=1e-5)
        alone_grads = one_grads if alone_grads is None else {k: alone_grads[k] + one_grads[k] for k in one_grads}
    for name, grad in grads.items():
        assert torch.isfinite(grad).all() and torch.allclose(grad, alone_grads[name], atol=1e-5), name


def test_leak_free_batch_equals_samples_alone_at_their_own_length():
    """With the fixed-G rule a sample's groups do not depend on its batch-mates or on how much padding follows."""
    lengths = [13, 30, 5]
    model, data = tiny("s2_attn"), samples(lengths, seed=1)
    logits, _ = logits_and_grads(model, collate(data, pad_id=0, group_size=G))
    for row, sample in enumerate(data):
        one = collate([sample], pad_id=0, group_size=G)  # 16, 32, 8 tokens
        assert one.input_ids.shape[1] == padded_length(lengths[row], G)
        one_logits, _ = logits_and_grads(model, one)
        assert torch.allclose(logits[row, :lengths[row]], one_logits[0, :lengths[row]], atol=1e-5)


def test_paper_variant_wraps_around_to_the_end_of_its_row():
    """The documented caveat: in the paper's variant tokens 0..G/2-1 see the row's last G/2 positions, here the
    sample's own tail alone (13 tokens in 16) but padding in a 32-token batch, so the first logits differ."""
    model, data = tiny("s2_attn_paper"), samples([13])
    at_16, _ = logits_and_grads(model, collate(data, pad_id=0, group_size=G))
    at_32, _ = logits_and_grads(model, collate(data, pad_id=0, group_size=G, length=32))
    assert not torch.allclose(at_16[0, :G // 2], at_32[0, :G // 2], atol=1e-4)  # (later layers pass it on)


# ------------------------------------------------------------------------------------- the padding rule

def test_every_length_pads_to_a_multiple_of_the_group_size_and_runs():
    for n in range(1, 70):
        length = padded_length(n, G)
        assert length % G == 0 and n <= length < n + G
    model = tiny()
    for lengths in ([1], [7, 9], [17], [31, 2, 25]):
        batch = collate(samples(lengths), pad_id=0, group_size=G)
        total, count = masked_lm_loss(model, batch)
        assert batch.input_ids.shape[1] == padded_length(max(lengths), G) and torch.isfinite(total)
        assert model.config.group_size_ratio == G / batch.input_ids.shape[1]  # one G, whatever the batch


def test_over_long_samples_are_counted_not_cut():
    tok = with_chat_template(load_tokenizer())
    long = parse_record({"instruction": "word " * 60, "output": "7"})
    short = parse_record({"instruction": "Repeat 7.", "output": "7"})
    encoded, skipped = encode_examples(tok, [long, short, long], max_length=32)
    assert len(encoded) == 1 and dict(skipped) == {"over-long (> seq_len=32 tokens)": 2}


# -------------------------------------------------------------------------------------------- bad data

def test_bad_records_are_counted_by_reason():
    records = [{"instruction": "a", "output": "b"}, {"instruction": "a"}, {"instruction": "a", "output": ""},
               "text", {"messages": [{"role": "user", "content": "hi"}]},
               {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
               {"instruction": "a", "input": "ctx", "output": 3}]
    examples, skipped = parse_records(records)
    assert len(examples) == 2 and examples[0].messages[0]["content"] == "a"
    assert dict(skipped) == {"missing field 'output'": 1, "empty output": 1, "not an object": 1, "no answer": 1,
                             "bad field 'output'": 1}
    with pytest.raises(BadExample, match="record 1: missing field 'output'.*on_bad='skip'"):
        parse_records(records, on_bad="error")


def test_loaders_json_jsonl_and_save_to_disk(tmp_path):
    rows = [{"instruction": "Q", "input": "doc", "output": "A"}, {"instruction": "Q2", "output": ""}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                                          {"role": "assistant", "content": "yo"}]})
                                                for _ in range(3)))
    examples, skipped = load_examples(tmp_path / "a.json")
    assert examples[0].messages[0]["content"] == "Q\n\ndoc" and dict(skipped) == {"empty output": 1}
    assert len(load_examples(tmp_path / "c.jsonl")[0]) == 3
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([{"instruction": "Q", "input": "", "output": "A"}] * 4).save_to_disk(tmp_path / "disk")
    assert len(load_examples(tmp_path / "disk")[0]) == 4
    (tmp_path / "bad.json").write_text("{not json")
    for path, message in ((tmp_path / "bad.json", "not valid JSON"), (tmp_path / "none.json", "does not exist"),
                          (tmp_path, "not a datasets.save_to_disk folder")):
        with pytest.raises(ValueError, match=message):
            load_examples(path)


def test_config_validates_the_sft_fields():
    with pytest.raises(ValueError, match="long_fraction must lie in"):
        validate(TrainConfig(long_fraction=1.5))
    with pytest.raises(ValueError, match="instructions=' '"):
        validate(TrainConfig(instructions=" "))


# --------------------------------------------------------------------------------------------- prompts

def test_inst_prompt_on_the_kit_tokenizer():
    tok = with_chat_template(load_tokenizer())
    assert tok.chat_template == INST_TEMPLATE
    ids, labels = encode_example(tok, parse_record({"instruction": "What is 2+2?", "input": "Count.", "output": "4"}))
    prompt = [i for i, label in zip(ids, labels) if label == IGNORE]
    assert tok.decode(prompt) == "[INST] What is 2+2?\n\nCount. [/INST]"
    assert tok.decode([t for t in labels if t != IGNORE]) == " 4" + tok.eos_token


def test_chat_template_prompt_on_smollm2(smollm2_folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_folder)
    template = tok.chat_template
    assert with_chat_template(tok).chat_template == template  # its own template is kept
    example = parse_record({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                         {"role": "user", "content": "Key?"}, {"role": "assistant", "content": "48215"}]})
    ids, labels = encode_example(tok, example)
    prompt = tok.decode([i for i, label in zip(ids, labels) if label == IGNORE])
    assert prompt.endswith("Key?<|im_end|>\n<|im_start|>assistant\n") and "Hello<|im_end|>" in prompt  # earlier turns: prompt
    assert tok.decode([t for t in labels if t != IGNORE]).startswith("48215<|im_end|>")


# ----------------------------------------------------------------------------------------- run and eval

def test_train_sft_runs_resumes_and_reports(tmp_path):
    config = TrainConfig(out_dir=str(tmp_path / "sft"), instructions="longqa", n_documents=12, seq_len=64,
                         attention="s2", method="lora+", max_steps=3, batch_size=3, progress=False,
                         model_overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                              num_attention_heads=2, num_key_value_heads=2,
                                              max_position_embeddings=64))
    result, report = train_sft(config)
    assert result.steps == 3 and all(map(torch.isfinite, torch.tensor(result.losses)))
    assert report["group_size"] == 16 and report["examples"] + sum(report["skipped"].values()) == 12
    assert (tmp_path / "sft" / "model" / "tokenizer_config.json").is_file()
    again, _ = train_sft(config)  # finished: reloaded, not retrained
    assert again.losses == result.losses
    grid = accuracy_grid(again.model, again.tokenizer, lengths=[32], depths=[0.0, 1.0], trials=1)
    assert len(grid["accuracy"]) == 2 and len(grid["answers"]) == 2


def test_cli_chat_asks_the_fine_tuned_model_about_a_file(tmp_path, capsys):
    """`longlora-kit chat --model <sft run>/model --file doc.txt`: the saved tokenizer keeps the [INST]
    template the model was trained with, so the command line prompts it exactly as training did."""
    from longlora_kit import chat
    from longlora_kit.cli import main
    from longlora_kit.sft_data import document_question

    config = TrainConfig(out_dir=str(tmp_path / "sft"), instructions="longqa", n_documents=12, seq_len=64,
                         method="lora+", max_steps=1, batch_size=2, progress=False,
                         model_overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                              num_attention_heads=2, num_key_value_heads=2,
                                              max_position_embeddings=64))
    train_sft(config)
    folder = tmp_path / "sft" / "model"
    _, tokenizer = chat.load_chat_model(folder)
    assert tokenizer.chat_template == INST_TEMPLATE
    qa = document_question(length=32, depth=0.5, seed=7)
    (tmp_path / "doc.txt").write_text(qa.document)
    assert main(["chat", "--model", str(folder), "--file", str(tmp_path / "doc.txt"), "--question", qa.question,
                 "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "[document:" in captured.err and captured.out.strip()  # the reply streamed to stdout
    prompt = tokenizer.decode(chat.build_prompt(tokenizer, qa.question, qa.document)[0])
    assert prompt.startswith("[INST]") and qa.document.strip() in prompt


def test_changed_instruction_data_is_a_different_run(tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "Repeat 7.", "output": "7"}] * 4))
    config = TrainConfig(out_dir=str(tmp_path / "sft"), instructions=str(data), seq_len=32, max_steps=1, batch_size=2,
                         progress=False, measure_memory=False, attention="s2",
                         model_overrides=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                              num_attention_heads=2, num_key_value_heads=2))
    train_sft(config)
    data.write_text(json.dumps([{"instruction": "Repeat 8.", "output": "8"}] * 4))  # same config, new data
    with pytest.raises(ValueError, match="samples_sha256"):
        train_sft(config)  # refused, never a stale reload of the old run


def test_exact_match_rule():
    assert exact_match(" 48215<|im_end|>", "48215") and not exact_match("4821", "48215")


def test_cli_sft_is_registered_and_refuses_a_missing_file(tmp_path, capsys):
    from longlora_kit.cli import build_parser, main

    args = build_parser().parse_args(["sft", "--base", str(tmp_path), "--long-fraction", "0"])
    assert args.func.__name__ == "run_sft" and args.long_fraction == 0.0
    code = main(["sft", "--base", str(tmp_path), "--instructions", str(tmp_path / "none.json"), "--out",
                 str(tmp_path / "out"), "--profile", "smoke"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_the_cli_spells_the_generated_source_as_the_library_does():
    from longlora_kit.cli import sft as sft_cli

    assert sft_cli.GENERATED == sft.GENERATED


def test_cli_sft_eval_records_before_after_command_and_machine(tmp_path, capsys):
    from longlora_kit.cli import main

    base = TrainConfig(out_dir=str(tmp_path / "base"), instructions="longqa", n_documents=8, seq_len=64,
                       method="lora+", max_steps=1, batch_size=2, progress=False, measure_memory=False,
                       model_overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    train_sft(base)
    argv = ["sft-eval", "--base", str(tmp_path / "base" / "model"), "--fractions", "0.5", "--out", str(tmp_path / "eval"),
            "--steps", "1", "--batch-size", "2", "--n-documents", "8", "--lengths", "32", "--depths", "0,1",
            "--trials", "1", "--record", str(tmp_path / "docs" / "record.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "before SFT: exact match" in out and "after SFT, long fraction 0.5" in out
    record = json.loads((tmp_path / "docs" / "record.json").read_text())
    assert record["command"].startswith("longlora-kit sft-eval --base ") and "--trials 1" in record["command"]
    assert {"cpu", "torch"} <= set(record["machine"]) and record["seconds"] > 0
    assert record["grid"] == {"lengths": [32], "depths": [0.0, 1.0], "trials": 1}
    assert list(record["after"]) == ["0.5"] and len(record["before"]["answers"]) == 2
    assert json.loads((tmp_path / "eval" / "sft_mix.json").read_text())["after"].keys() == {"0.5"}


def test_cli_sft_eval_names_a_bad_list(tmp_path, capsys):
    from longlora_kit.cli import main

    assert main(["sft-eval", "--base", str(tmp_path), "--lengths", "512,lots"]) == 2
    assert "--lengths '512,lots': give comma-separated numbers" in capsys.readouterr().err


def test_cli_base_smollm2_is_the_fetched_folder(smollm2_folder, tmp_path):
    from longlora_kit.cli.sft import _base

    assert _base("smollm2") == str(smollm2_folder) and _base(str(tmp_path)) == str(tmp_path)
