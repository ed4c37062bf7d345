"""longlora_kit.evaluate: sliding-window perplexity vs brute force, passkey scoring, eval mode = full attention."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from longlora_kit import cli, data, evaluate, s2attn, viz
from longlora_kit.config import attn_implementation
from longlora_kit.models import build_model, tiny_config


@pytest.fixture(scope="module")
def model():
    return build_model(tiny_config(vocab_size=50, num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                   num_key_value_heads=2, intermediate_size=128)).eval()


def brute_force_nll(model, ids, length, stride):
    """Each token t scored by its own forward pass over exactly the context its window gives it."""
    nll, previous_end, k = {}, 0, 0
    while previous_end < len(ids):
        begin = 0 if k == 0 else min(k * stride, previous_end - 1)  # stride == length: overlap by one
        end = min(begin + length, len(ids))
        for t in range(max(begin + 1, previous_end), end):
            with torch.no_grad():
                logits = model(ids[begin:t][None]).logits[0, -1]
            nll[t] = -F.log_softmax(logits, -1)[ids[t]].item()
        previous_end, k = end, k + 1
    return nll


@pytest.mark.parametrize("length,stride", [(16, 4), (16, 16), (20, 7), (64, 8)])
def test_sliding_window_perplexity_equals_brute_force(model, length, stride):
    ids = torch.randint(0, 50, (45,))
    expected = brute_force_nll(model, ids, length, stride)
    positions, nll = evaluate.token_nll(model, ids, length, stride, batch_size=3)
    assert positions.tolist() == list(range(1, 45))  # every token but the first, exactly once
    torch.testing.assert_close(nll, torch.tensor([expected[t] for t in range(1, 45)]), rtol=1e-4, atol=1e-5)
    result = evaluate.perplexity(model, ids, length, stride)
    assert result.tokens_scored == 44
    assert result.perplexity == pytest.approx(math.exp(sum(expected.values()) / 44), rel=1e-5)


def test_perplexity_bad_input(model):
    with pytest.raises(ValueError, match="stride"):
        evaluate.perplexity(model, torch.arange(40) % 50, 16, stride=17)
    with pytest.raises(ValueError, match="one stream"):
        evaluate.perplexity(model, torch.zeros(2, 20, dtype=torch.long), 16)


def test_loss_by_position_matches_direct_computation(model):
    ids = torch.randint(0, 50, (70,))
    curve = evaluate.loss_by_position(model, ids, 32, batch_size=1)
    blocks = ids[:64].view(2, 32)
    logits = model(blocks).logits[:, :-1]
    direct = F.cross_entropy(logits.transpose(1, 2), blocks[:, 1:], reduction="none").mean(0)
    torch.testing.assert_close(curve, direct, rtol=1e-4, atol=1e-5)


def test_greedy_continuation_equals_transformers_generate(model):
    prompt = torch.randint(0, 50, (2, 12))
    ours = evaluate.greedy_continuation(model, prompt, 5)
    theirs = model.generate(prompt, max_new_tokens=5, do_sample=False, min_new_tokens=5, pad_token_id=0)[:, 12:]
    assert torch.equal(ours, theirs)


class Oracle(torch.nn.Module):
    """A stand-in causal LM that reads the pass key from its prompt and 'predicts' it (or a wrong one)."""

    def __init__(self, tokenizer, wrong=False):
        super().__init__()
        self.tokenizer, self.wrong, self.vocab = tokenizer, wrong, len(tokenizer)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.model, self.lm_head = self._body, torch.nn.Identity()

    def _body(self, input_ids):
        rows = []
        for ids in input_ids.tolist():
            text = self.tokenizer.decode(ids)
            key = text.split("The pass key is ")[1][:5]
            answer = self.tokenizer(" " + (str(99999 - int(key)) if self.wrong else key) + ".")["input_ids"]
            generated = text.rpartition("The pass key is")[2]  # what was decoded so far
            done = len(self.tokenizer(generated)["input_ids"]) if generated else 0
            rows.append(F.one_hot(torch.tensor(answer[min(done, len(answer) - 1)]), self.vocab).float())
        return type("Out", (), {"last_hidden_state": torch.stack(rows)[:, None].expand(-1, input_ids.shape[1], -1)})()


def test_passkey_scoring_with_an_oracle():
    tokenizer = data.load_tokenizer()
    right = evaluate.passkey_accuracy(Oracle(tokenizer), tokenizer, [64, 96], [0.0, 1.0], trials=2)
    wrong = evaluate.passkey_accuracy(Oracle(tokenizer, wrong=True), tokenizer, [64, 96], [0.0, 1.0], trials=2)
    assert right.accuracy == [[1.0, 1.0], [1.0, 1.0]] and right.by_length() == [1.0, 1.0]
    assert wrong.accuracy == [[0.0, 0.0], [0.0, 0.0]]
    assert len(right.answers) == 8 and all(a["correct"] for a in right.answers)


def test_evaluation_uses_full_attention_even_for_an_s2_model(model):
    """S2-Attn is training-only: in eval mode an s2_attn model scores exactly like the sdpa one."""
    s2 = build_model(model.config, seed=None)
    s2.load_state_dict(model.state_dict())
    s2.config.group_size_ratio = 0.25
    s2attn.register()  # explicit: importing the kit registers nothing
    s2.set_attn_implementation(attn_implementation("s2"))
    ids = torch.randint(0, 50, (64,))
    s2.train()  # evaluate must switch to eval mode itself
    assert evaluate.perplexity(s2, ids, 32).nll == pytest.approx(evaluate.perplexity(model, ids, 32).nll, rel=1e-6)
    assert s2.training  # and restore the mode it found


def test_pi_zero_shot_loading(tmp_path, model):
    model.save_pretrained(tmp_path)
    extended = evaluate.load_for_eval(tmp_path, target_length=1024)
    assert extended.config.rope_parameters["factor"] == 4.0 and not extended.training
    plain = evaluate.load_for_eval(tmp_path)
    assert plain.config.rope_parameters.get("rope_type", "default") == "default"
    with pytest.raises(ValueError, match="no saved model"):
        evaluate.load_for_eval(tmp_path / "missing")


def test_passkey_heatmaps_show_the_accuracy_grid():
    result = evaluate.PasskeyResult(lengths=[64, 128], depths=[0.0, 1.0], trials=2, accuracy=[[1.0, 0.5], [0.0, 1.0]])
    fig = viz.passkey_heatmaps({"base": result, "LongLoRA": result})
    assert [[list(r) for r in t.z] for t in fig.data] == [[[1.0, 0.5], [0.0, 1.0]]] * 2 and list(fig.data[0].x) == ["64", "128"]


# ----------------------------------------------------------------------------- `longlora-kit eval` input

@pytest.fixture(scope="module")
def saved(tmp_path_factory, model):
    """A tiny saved model with the kit's tokenizer, an adapter folder and a run folder around a model."""
    root = tmp_path_factory.mktemp("eval")
    def small(trained_length):
        return build_model(tiny_config(vocab_size=data.TOKENIZER_VOCAB_SIZE, num_hidden_layers=1, hidden_size=32,
                                       num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                       max_position_embeddings=trained_length))

    small(64).save_pretrained(root / "base")
    data.load_tokenizer().save_pretrained(root / "base")
    small(256).save_pretrained(root / "run" / "model")  # "extended" 4x
    (root / "run" / "adapter").mkdir()
    (root / "run" / "adapter" / "adapter_config.json").write_text("{}")
    (root / "garbage").mkdir()
    (root / "garbage" / "config.json").write_text((root / "base" / "config.json").read_text())
    (root / "garbage" / "model.safetensors").write_bytes(b"not safetensors" * 10)
    return root


@pytest.mark.parametrize("flag, path, says", [
    ("--extended", "run/modle", "it does not exist"),
    ("--extended", "run", "it is a run folder; pass its model"),
    ("--extended", "run/adapter", "LoRA adapter"),
    ("--model", "mine=run/adapter", "--model mine=.* LoRA adapter"),
    ("--model", "no-path", "write NAME=PATH"),
    ("--model", "base=run/model", "name 'base' is taken"),
    ("--base", "run", "--base=.* run folder"),
])
def test_eval_refuses_a_wrong_path_before_evaluating_anything(saved, flag, path, says, capsys):
    """A typo, a run folder or an adapter folder used to exit 0 and silently drop the LongLoRA row."""
    base = [] if flag == "--base" else ["--base", str(saved / "base")]
    value = path if path == "no-path" else (f"{path.partition('=')[0]}={saved / path.partition('=')[2]}"
                                            if "=" in path else str(saved / path))
    out = saved / "out"
    assert cli.main(["eval", "--profile", "smoke", "--out", str(out), *base, flag, value]) == 2
    printed, err = capsys.readouterr()
    assert re.search(says, err) and "evaluated" not in printed and not out.exists()


def test_eval_keeps_what_it_computed_when_a_later_model_fails(saved, capsys):
    out = saved / "kept"
    args = ["eval", "--profile", "smoke", "--out", str(out), "--base", str(saved / "base"),
            "--extended", str(saved / "run" / "model"), "--model", f"broken={saved / 'garbage'}"]
    assert cli.main(args) == 2  # garbage weights: one clear line, not a traceback
    assert "could not load the model" in capsys.readouterr().err
    rows = json.loads((out / "eval.json").read_text())
    assert [r["name"] for r in rows] == ["base", "PI zero-shot", "YaRN zero-shot", "LongLoRA"]
    assert all(len(r["perplexity"]) == 3 for r in rows)  # 64, 128, 256


def test_format_table_and_settings():
    table = evaluate.format_table([{"model": "base", "ppl@256": 3.2}, {"model": "LongLoRA", "ppl@256": 2.9}])
    assert table.splitlines()[0].split() == ["model", "ppl@256"] and "LongLoRA" in table
    settings = evaluate.eval_settings(256, 4, profile="workshop")
    assert settings.lengths == [256, 512, 1024] and settings.passkey_lengths == [256, 512, 1024]


def test_perplexity_figure_marks_the_trained_length_on_the_log_axis():
    import math

    fig = viz.perplexity_figure({"base": {128: 1.8, 256: 2.4, 512: 3.2}}, trained_length=128)
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [128, 256, 512]
    (line,) = fig.layout.shapes  # on a log axis: shapes in data units, annotations in log10 units
    (label,) = fig.layout.annotations
    assert line.x0 == line.x1 == 128 and label.x == math.log10(128)
