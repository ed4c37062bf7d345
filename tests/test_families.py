"""S2-Attn and LoRA+ on every supported decoder family (issue 17), each on a tiny random config.

Per family x variant: training mode equals a dense-mask reference (an attention function registered
under another name, written out here with eager math: the S2 mask from ``patterns``, and-ed with the
sliding window ``q - kv < W``, scores soft-capped where the layer asks), forward and gradients; eval
mode equals the model's own SDPA path (eager for Gemma-2: SDPA cannot soft-cap); LoRA+ lowers the loss.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from longlora_kit import lora, s2attn
from longlora_kit.families import FAMILIES, build, check_attention_backend, family_of, is_norm, tiny_config
from longlora_kit.patterns import dense_mask, pattern_mask

LENGTH, GROUP = 64, 16  # G = L/4, the config default ratio

#: family -> (model_type, overrides). Windows below G (8, 12) take the cut path, 32 >= G the fast one.
CASES = {
    "llama": ("llama", {}),
    "llama3-rope": ("llama", {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0,
                                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 32}}),
    "mistral": ("mistral", {"sliding_window": 8}),
    "qwen2": ("qwen2", {}),  # layer 0 full, layer 1 sliding (W=32 >= G)
    "qwen3": ("qwen3", {}),
    "gemma": ("gemma", {}),
    "gemma2": ("gemma2", {"sliding_window": 8, "attn_logit_softcapping": 1.0, "initializer_range": 0.2}),
    "gemma3": ("gemma3_text", {}),
    "phi3": ("phi3", {"sliding_window": 12}),
    "olmo2": ("olmo2", {}),
    "gpt_neox": ("gpt_neox", {}),
    "smollm3": ("smollm3", {}),
}


def dense_reference(variant):
    """S2 as one dense mask and eager math: what s2_attn must equal, whatever path it takes."""

    def forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None,
                softcap=None, **kwargs):
        heads, length = query.shape[1], query.shape[2]
        mask = dense_mask(pattern_mask("s2", length // 4, heads, length, variant), heads, length)  # (H, L, L)
        if sliding_window is not None:
            i = torch.arange(length)
            mask = mask & (i[:, None] - i[None, :] < sliding_window)
        rep = heads // key.shape[1]
        key, value = key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)
        scores = query @ key.transpose(-1, -2) * scaling
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        weights = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1)
        return (weights @ value).transpose(1, 2), None  # (B, L, H, D)

    return forward


@pytest.fixture(scope="module", autouse=True)
def registered():
    s2attn.register()
    for variant in ("leak_free", "paper"):
        AttentionInterface.register(f"dense_ref_{variant}", dense_reference(variant))
        AttentionMaskInterface.register(f"dense_ref_{variant}", sdpa_mask)


def run(model, implementation, tokens):
    model.set_attn_implementation(implementation)
    model.zero_grad()
    out = model(tokens, labels=tokens)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("implementation", ["s2_attn", "s2_attn_paper"])
@pytest.mark.parametrize("case", list(CASES))
def test_family_train_eval_and_lora_plus(case, implementation):
    model_type, overrides = CASES[case]
    model = build(tiny_config(model_type, **overrides))
    tokens = torch.randint(3, 128, (2, LENGTH), generator=torch.Generator().manual_seed(0))
    variant = s2attn.IMPLEMENTATIONS[implementation]

    model.train()  # training: S2 equals the dense-mask reference, forward and gradients
    logits, grads = run(model, implementation, tokens)
    ref_logits, ref_grads = run(model, f"dense_ref_{variant}", tokens)
    torch.testing.assert_close(logits, ref_logits, atol=2e-5, rtol=1e-4)
    assert grads.keys() == ref_grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=2e-5, rtol=1e-3, msg=name)
    full_logits, _ = run(model, "eager", tokens)
    assert not torch.allclose(logits, full_logits, atol=1e-4)  # and it is sparse: not full attention

    model.eval()  # eval: full attention, as the model's own kernel (SDPA cannot soft-cap: eager there)
    own = "eager" if getattr(model.config, "attn_logit_softcapping", None) else "sdpa"
    with torch.no_grad():
        s2_eval = s2attn.enable(model, implementation)(tokens).logits
        model.set_attn_implementation(own)
        torch.testing.assert_close(s2_eval, model(tokens).logits, atol=2e-5, rtol=1e-4)

    model.train()  # LoRA+ (the family's targets, embeddings, every norm) lowers the loss
    peft_model = lora.apply(s2attn.enable(model, implementation), "lora+")
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(4):
        loss = peft_model(tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


# ---------------------------------------------------------------------------------------------------
# What a layer passes: sliding window and softcap honoured, anything else refused


@pytest.mark.parametrize("variant", ["leak_free", "paper"])
def test_sliding_window_is_group_and_window(variant):
    q, k, v = (torch.randn(1, 4, LENGTH, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    plain = s2attn.s2_attention(q, k, v, GROUP, variant)
    base = dense_mask(pattern_mask("s2", GROUP, 4, LENGTH, variant), 4, LENGTH)
    i = torch.arange(LENGTH)
    for window in (4, 8, 15, 16, 32):
        out = s2attn.s2_attention(q, k, v, GROUP, variant, sliding_window=window)
        expected = s2attn.reference_attention(q, k, v, base & (i[:, None] - i[None, :] < window))
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
        assert torch.allclose(out, plain, atol=1e-6) == (window >= GROUP)  # W >= G: the window changes nothing


def test_softcap_is_applied_and_needs_sdpa_backend():
    q, k, v = (3 * torch.randn(1, 2, 16, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    capped = s2attn.s2_attention(q, k, v, 4, softcap=1.0)
    assert not torch.allclose(capped, s2attn.s2_attention(q, k, v, 4), atol=1e-3)
    with pytest.raises(ValueError, match="backend='flash' does not do"):
        s2attn.s2_attention(q, k, v, 4, backend="flash", softcap=1.0)
    with pytest.raises(ValueError, match="softcap=-1.0 must be > 0"):
        s2attn.s2_attention(q, k, v, 4, softcap=-1.0)


def test_unknown_keyword_and_non_causal_layer_are_refused():
    model = s2attn.enable(build(tiny_config("llama")))
    attention = model.model.layers[0].self_attn
    q = k = v = torch.randn(1, 4, 16, 16)
    function = AttentionInterface._global_mapping["s2_attn"]
    with pytest.raises(ValueError, match=r"family 'llama'\) passed \['s_aux'\]"):
        function(attention, q, k, v, None, s_aux=torch.zeros(4))
    attention.is_causal = False
    with pytest.raises(ValueError, match="is_causal=False"):
        model(torch.randint(3, 128, (1, 16)))


def test_unsupported_family_is_refused_by_name():
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=128, n_embd=64, n_layer=1, n_head=4, n_positions=64)
    model = build(config)
    with pytest.raises(ValueError, match="model family 'gpt2' is not supported"):
        s2attn.enable(model)
    model.set_attn_implementation("s2_attn")  # transformers accepts the name: refused at the first call
    with pytest.raises(ValueError, match="model family 'gpt2' is not supported"):
        model(torch.randint(0, 128, (1, 16)))


def test_model_that_bypasses_attention_interface_is_refused():
    from transformers import LlamaForCausalLM

    class OwnAttention(LlamaForCausalLM):  # stands for a model class that computes attention itself
        _supports_attention_backend = False

    with pytest.raises(ValueError, match="does not dispatch attention through transformers' AttentionInterface"):
        check_attention_backend(OwnAttention(tiny_config("llama")))


# ---------------------------------------------------------------------------------------------------
# LoRA+ per family: targets, norms by type, parameter_report against a brute-force count

#: Norm leaves per family, written out by hand (not found by type) for the brute-force count.
NORM_LEAVES = {
    "llama": {"input_layernorm", "post_attention_layernorm", "norm"},
    "gemma2": {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
               "post_feedforward_layernorm", "norm"},
    "qwen3": {"input_layernorm", "post_attention_layernorm", "norm", "q_norm", "k_norm"},
    "olmo2": {"post_attention_layernorm", "post_feedforward_layernorm", "norm", "q_norm", "k_norm"},
    "phi3": {"input_layernorm", "post_attention_layernorm", "norm"},
    "gpt_neox": {"input_layernorm", "post_attention_layernorm", "final_layer_norm"},
}


@pytest.mark.parametrize("model_type", list(NORM_LEAVES))
def test_parameter_report_matches_brute_force(model_type):
    base = build(tiny_config(model_type))
    assert {n.rsplit(".", 1)[-1] for n, m in base.named_modules() if is_norm(m)} == NORM_LEAVES[model_type]
    model = lora.apply(base, "lora+")
    expected = {"lora": [0, 0], "embedding": [0, 0], "norm": [0, 0], "head": [0, 0], "linear": [0, 0]}
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if ".original_module." in name or id(p) in seen:
            continue
        seen.add(id(p))
        parts = name.split(".")
        kind = ("lora" if any(s.startswith("lora_") for s in parts)
                else "norm" if NORM_LEAVES[model_type] & set(parts)
                else "embedding" if {"embed_tokens", "embed_in"} & set(parts)
                else "head" if {"lm_head", "embed_out"} & set(parts)
                else "linear")
        expected[kind][0] += p.numel()
        expected[kind][1] += p.numel() * p.requires_grad
    report = {row["kind"]: [row["parameters"], row["trainable"]] for row in lora.parameter_report(model)}
    assert {k: report[k] for k in expected} == expected and report["other"] == [0, 0]
    assert expected["head"][1] == 0 and expected["embedding"][0] == expected["embedding"][1] > 0
    targets = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert targets == set(family_of(base).lora_targets)


def test_every_family_has_a_working_tiny_config():
    for model_type in FAMILIES:
        assert family_of(tiny_config(model_type)).model_type == model_type


def test_tied_embeddings_untie_on_merge_and_reload_exactly(tmp_path):
    """LoRA+ trains a copy of a tied embedding table; the LM head keeps the frozen original. Merging
    therefore unties them (config.tie_word_embeddings becomes False), and the saved model reloads exactly."""
    from transformers import AutoModelForCausalLM

    model = build(tiny_config("gemma"))  # Gemma ties its head to the embeddings
    original = model.get_input_embeddings().weight.detach().clone()
    peft_model = lora.apply(model, "lora+")
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))  # stands for training
    merged = lora.merge(peft_model).eval()
    assert not merged.config.tie_word_embeddings
    assert torch.equal(merged.get_output_embeddings().weight, original)  # the head stayed frozen
    assert not torch.equal(merged.get_input_embeddings().weight, original)  # the embeddings trained
    merged.save_pretrained(tmp_path)
    tokens = torch.randint(3, 128, (1, 32))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(merged(tokens).logits, reloaded(tokens).logits)


# ---------------------------------------------------------------------------------------------------
# Presets: published configs built weight-free; the memory estimator reads every family

#: Parameter counts of the published models (their model cards / safetensors metadata).
PUBLISHED_PARAMETERS = {
    "mistral-7b": 7_241_732_096, "qwen2.5-0.5b": 494_032_768, "qwen3-0.6b": 596_049_920,
    "gemma-2-2b": 2_614_341_888, "phi-3-mini-4k": 3_821_079_552, "olmo-2-1b": 1_484_916_736,
    "pythia-1.4b": 1_414_647_808, "smollm3-3b": 3_075_098_624,
}


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMETERS))
def test_family_preset_builds_on_meta_and_estimates_memory(name, capsys):
    from longlora_kit.cli import main
    from longlora_kit.memory import parameter_counts
    from longlora_kit.models import count_parameters
    from longlora_kit.presets import FAMILY_PRESETS, get_preset

    assert set(FAMILY_PRESETS) == set(PUBLISHED_PARAMETERS)
    preset = get_preset(name)
    model = preset.build_meta()
    assert next(model.parameters()).device.type == "meta"
    assert count_parameters(model) == PUBLISHED_PARAMETERS[name]
    family_of(model)  # every preset is a supported family
    # the estimator's closed form (q/k/v/o + MLP + norms + embeddings) stays within 0.1% (biases, q/k norms)
    estimate = parameter_counts(preset.model_config(), "full")["total"]
    assert abs(estimate - PUBLISHED_PARAMETERS[name]) / PUBLISHED_PARAMETERS[name] < 1e-3
    assert main(["memory", "--preset", name, "--context", "8192"]) == 0
    assert "longest context that fits" in capsys.readouterr().out
