"""The real-model evaluation (issue 16 items 3, 4, 8) at smoke size on the fetched SmolLM2."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig

from longlora_kit import real_eval, real_report, rope
from longlora_kit.experiments import bench_real


@pytest.fixture(scope="module")
def ids(smollm2):
    return real_eval.text_tokens("python", smollm2[1], 96)


def test_token_nll_is_the_brute_force_per_token_nll(smollm2, ids):
    model, _ = smollm2
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0]  # (L, V), the whole thing at once
    brute = -torch.stack([F.log_softmax(logits[t - 1], -1)[ids[t]] for t in range(1, len(ids))])
    nll = real_eval.token_nll(model, ids, chunk=16)  # several LM-head chunks
    torch.testing.assert_close(nll, brute, atol=1e-4, rtol=1e-4)
    result = real_eval.perplexity_by_position(model, ids, bucket=32)
    # predicted positions 1..31 | 32..63 | 64..95
    expected = [math.exp(brute[a - 1 : b - 1].mean().item()) for a, b in ((1, 32), (32, 64), (64, 96))]
    assert result["buckets"] == [0, 32, 64]
    assert result["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert result["overall"] == pytest.approx(math.exp(brute.mean().item()), rel=1e-4)


EXPECTED_ROPE = {
    "extrapolation": {"rope_type": "default", "rope_theta": 1e5},
    "pi": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e5},
    "ntk": {"rope_type": "default", "rope_theta": 1e5 * 2.0 ** (64 / 62)},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e5},
    "yarn": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e5, "original_max_position_embeddings": 8192},
}


@pytest.mark.parametrize("method", list(real_eval.ZERO_SHOT))
def test_zero_shot_configs_are_what_transformers_reads(smollm2, method):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = real_eval.zero_shot_config(smollm2[0].config, method)
    params = {k: v for k, v in config.rope_parameters.items() if v is not None}
    assert params == pytest.approx(EXPECTED_ROPE[method])
    assert config.max_position_embeddings == (8192 if method in ("extrapolation", "dynamic") else 16384)
    theirs = LlamaRotaryEmbedding(config)  # transformers' own rotary from this config
    position_ids = torch.arange(16384)[None]
    ours = rope.KitRotaryEmbedding(config)
    x = torch.zeros(1, dtype=torch.float32)
    for a, b in zip(theirs(x, position_ids), ours(x, position_ids)):
        torch.testing.assert_close(a, b)
    if method == "extrapolation":
        assert config.rope_parameters == smollm2[0].config.rope_parameters  # untouched copy


def test_report_writes_resumes_and_never_recomputes(smollm2_folder, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    real_report.run(smollm2_folder, out, "smoke", only=["ppl/python/extrapolation/"], log=lambda m: None)
    first = json.loads(out.read_text())
    cell = first["cells"]["ppl/python/extrapolation/256"]
    assert len(cell["perplexity"]) == 2 and 1 < cell["overall"] < 1000 and cell["seconds"] >= 0
    assert "extrapolation" in out.with_suffix(".md").read_text() and "Not computed yet" in out.with_suffix(".md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]  # no temporary file left behind

    # a pre-filled cell is kept as it is, and nothing already in the file runs again
    first["cells"]["ppl/python/pi/256"] = {"buckets": [0], "perplexity": [7.0], "overall": 7.0, "seconds": 0.0}
    real_report.write_json(out, first)

    def refuse(self, cell, on_record=None):
        raise AssertionError(f"recomputed {cell.key}")

    monkeypatch.setattr(real_report.Runner, "compute", refuse)
    results = real_report.run(smollm2_folder, out, "smoke", only=["ppl/python/extrapolation/", "ppl/python/pi/"],
                              log=lambda m: None)
    assert results["cells"]["ppl/python/pi/256"]["overall"] == 7.0
    assert results["cells"]["ppl/python/extrapolation/256"] == cell
    with pytest.raises(ValueError, match="holds a 'smoke' run"):
        real_report.run(smollm2_folder, out, "workshop", log=lambda m: None)


def test_s2_step0_at_a_tiny_length(smollm2_folder, smollm2, ids):
    model = real_eval.load_s2_model(smollm2_folder)
    windows = ids[:64].view(1, 64)  # G = 16
    ppl = real_eval.attention_mode_perplexity(model, windows)
    assert not model.training  # back to eval / full attention
    # eval mode is plain full attention: the same as the SDPA model
    plain = math.exp(real_eval.token_nll(smollm2[0], windows[0]).mean().item())
    assert ppl["full"] == pytest.approx(plain, rel=1e-4)
    # short groups lose context: both sparse patterns are worse than full attention
    assert ppl["s2"] > ppl["full"] and ppl["pattern1"] > ppl["full"]
    with pytest.raises(ValueError, match="mode='sparse'"):
        real_eval.set_attention_mode(model, "sparse")


def test_bench_real_runs_a_tiny_step_and_states_the_limit(smollm2_folder):
    rows = bench_real.real_benchmark(smollm2_folder, [64], steps=1, warmup=0, log=lambda m: None)
    full, s2 = rows
    assert (full["attention"], s2["attention"]) == ("full", "s2") and s2["speedup"] > 0
    assert 1 < s2["limit_model"] < s2["limit_hardware"] < 1.2  # attention is a sliver of 64 tokens
    assert "| 64 | s2 |" in bench_real.markdown_table(rows, "test machine")
    flops = {a: bench_real.causal_flops(AutoConfig.from_pretrained(smollm2_folder), 64, a)["hardware"] for a in ("full", "s2")}
    assert flops["s2"] < flops["full"]  # S2 only removes attention work
    assert full["gflops"] == pytest.approx(flops["full"] / full["step_s"] / 1e9)
    assert s2["gflops"] == pytest.approx(flops["s2"] / s2["step_s"] / 1e9)


@pytest.fixture(scope="module")
def extended_run(smollm2_folder, tmp_path_factory):
    """`longlora-kit extend` on the real model, two tiny steps: PI 8k -> 16k, S2-Attn, LoRA+."""
    from longlora_kit import recipes, train

    out = tmp_path_factory.mktemp("extend") / "smollm2-16k"
    config = recipes.extension_config(
        base_model=str(smollm2_folder), out_dir=str(out), preset="smollm2-135m", seq_len=64, target_length=16384,
        data="stdlib", n_documents=4, val_fraction=0.25, max_steps=2, grad_accum=1, warmup_steps=0, progress=False, measure_memory=False)
    train.train(config)
    return out


def test_the_extended_model_is_reported_beside_the_zero_shot_methods(smollm2_folder, extended_run, tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match="holds no finished run"):
        real_report.run(smollm2_folder, out, "smoke", extended=tmp_path, log=lambda m: None)
    skipped = []
    real_report.run(smollm2_folder, out, "smoke", only=["extension/"], log=skipped.append)  # no --extended
    assert any("needs --extended" in m for m in skipped) and not out.exists()  # nothing computed

    only = ["extension/", *(f"ppl/python/{m}/" for m in ("extrapolation", "pi", "yarn", "longlora"))]
    results = real_report.run(smollm2_folder, out, "smoke", only=only, extended=extended_run, log=lambda m: None)
    record = results["cells"]["extension/256"]
    assert len(record["losses"]) == 2 and record["settings"]["rope_method"] == "linear"
    assert record["settings"]["attention"] == "s2" and record["settings"]["method"] == "lora+"
    trained = results["cells"]["ppl/python/longlora/256"]
    assert trained["perplexity"] != results["cells"]["ppl/python/extrapolation/256"]["perplexity"]
    markdown = out.with_suffix(".md").read_text()
    assert "LongLoRA (PI x2 + S2-Attn + LoRA+, trained)" in markdown and "share of PI's loss won back" in markdown


def test_the_extended_model_keeps_its_interpolated_rope(extended_run):
    model = real_eval.load_model(extended_run / "model")
    assert model.config.rope_parameters["rope_type"] == "linear" and model.config.rope_parameters["factor"] == 2.0
