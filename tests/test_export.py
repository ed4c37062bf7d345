"""export: a merged Llama -> GGUF -> transformers' ``gguf_file=`` loader gives the same logits.

Measured: f32 exact (max |Δlogit| = 0) on the tiny Llama and on SmolLM2-135M after LoRA+ steps;
f16 max |Δlogit| ≈ 6e-4 (tiny, logits ~1) and ≈ 0.07 (SmolLM2, logits ~30).
"""

import os
import time

import numpy as np
import pytest
import torch

from longlora_kit import cli, export, families, lora, rope, s2attn
from longlora_kit.models import build_model, tiny_config
from longlora_kit.tokenizer import load_tokenizer

SMOKE = os.environ.get("LONGLORA_KIT_PROFILE", "smoke") == "smoke"
TEXT = "Hello world, the pass key is 48215.  Two  spaces\nnew line <|endoftext|>"


@pytest.fixture(scope="module")
def tiny():
    """An extended (PI x4, 1024 positions) tiny Llama with GQA, its config, and the kit's tokenizer."""
    config = rope.extend_config(tiny_config(vocab_size=4096, num_key_value_heads=2, num_hidden_layers=2), 1024)
    return build_model(config).eval(), load_tokenizer()


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("dtype, atol", [("f32", 0.0), ("f16", 3e-3)])
def test_tiny_round_trip(tiny, tmp_path, dtype, atol):
    model, tokenizer = tiny
    path = export.export_gguf(model, tokenizer, tmp_path / "tiny.gguf", dtype=dtype)
    loaded, loaded_tokenizer = export.load_gguf(path, rope_parameters=model.config.rope_parameters)
    ids = torch.randint(0, 4096, (2, 300))  # past the original 256 positions
    torch.testing.assert_close(logits(loaded, ids), logits(model, ids), rtol=0, atol=atol)
    for field in ("hidden_size", "num_hidden_layers", "num_key_value_heads", "intermediate_size",
                  "max_position_embeddings", "vocab_size", "rms_norm_eps", "tie_word_embeddings"):
        assert getattr(loaded.config, field) == pytest.approx(getattr(model.config, field)), field
    assert loaded_tokenizer(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert loaded_tokenizer.eos_token == tokenizer.eos_token == "<|endoftext|>"


def test_metadata_carries_the_extended_rope(tiny, tmp_path):
    model, tokenizer = tiny
    meta = export.read_metadata(export.export_gguf(model, tokenizer, tmp_path / "m.gguf"))
    assert meta["general.architecture"] == "llama"
    assert meta["llama.context_length"] == 1024
    assert meta["llama.rope.scaling.type"] == "linear"
    assert meta["llama.rope.scaling.factor"] == 4.0
    assert meta["llama.rope.scaling.original_context_length"] == 256
    assert meta["llama.attention.head_count_kv"] == 2
    assert meta["tokenizer.ggml.pre"] == "smollm"  # single digits, then GPT-2 splitting
    assert len(meta["tokenizer.ggml.tokens"]) == 4096 and meta["tokenizer.ggml.token_type"][0] == 3  # control


def test_transformers_loader_drops_rope_scaling(tiny, tmp_path):
    """Why load_gguf takes rope_parameters: transformers 5.23 rebuilds RoPE scaling for gpt-oss only."""
    model, tokenizer = tiny
    path = export.export_gguf(model, tokenizer, tmp_path / "m.gguf")
    loaded, _ = export.load_gguf(path)
    assert loaded.config.rope_parameters["rope_type"] == "default"
    ids = torch.randint(0, 4096, (1, 64))
    assert (logits(loaded, ids) - logits(model, ids)).abs().max() > 1e-3


def test_without_the_qk_permutation_the_file_is_wrong(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(export, "permute_qk", lambda weight, n_heads: weight)
    path = export.export_gguf(model, tokenizer, tmp_path / "m.gguf")
    loaded, _ = export.load_gguf(path, rope_parameters=model.config.rope_parameters)
    ids = torch.randint(0, 4096, (1, 64))
    assert (logits(loaded, ids) - logits(model, ids)).abs().max() > 1e-2


def test_names_agree_with_the_gguf_package(tiny):
    from gguf import MODEL_ARCH, get_tensor_name_map

    model, _ = tiny
    name_map = get_tensor_name_map(MODEL_ARCH.LLAMA, model.config.num_hidden_layers)
    for name in model.state_dict():
        stem, suffix = name.rsplit(".", 1)
        assert export.tensor_name(name) == f"{name_map.get_name(stem)}.{suffix}"


def test_permutation_pairs_rope_dimensions():
    w = np.arange(16).reshape(8, 2)  # 2 heads of width 4
    assert export.permute_qk(w, 2)[:, 0].tolist() == [0, 4, 2, 6, 8, 12, 10, 14]


def test_bad_input_is_refused(tiny, tmp_path):
    model, tokenizer = tiny
    qwen = families.build(families.tiny_config("qwen3"))
    with pytest.raises(ValueError, match="model_type='qwen3'.*Llama family only"):
        export.export_gguf(qwen, tokenizer, tmp_path / "q.gguf")
    with pytest.raises(ValueError, match="LoRA adapter.*lora.merge"):
        export.export_gguf(lora.apply(build_model(tiny_config(vocab_size=4096)), "lora"), tokenizer, tmp_path / "a.gguf")
    with pytest.raises(ValueError, match="dtype='q4'"):
        export.export_gguf(model, tokenizer, tmp_path / "d.gguf", dtype="q4")
    llama3 = build_model(rope.extend_config(tiny_config(vocab_size=4096), 1024, method="llama3"))
    with pytest.raises(ValueError, match="rope_type='llama3'.*linear"):
        export.export_gguf(llama3, tokenizer, tmp_path / "r.gguf")
    (tmp_path / "x.gguf").write_text("keep me")
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        export.export_gguf(model, tokenizer, tmp_path / "x.gguf")
    assert (tmp_path / "x.gguf").read_text() == "keep me"


def test_cli(tiny, tmp_path, capsys):
    model, tokenizer = tiny
    folder = tmp_path / "merged"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out.gguf"
    assert cli.main(["export", "--model", str(folder), "--gguf", str(out), "--dtype", "f16"]) == 0
    assert export.read_metadata(out)["general.file_type"] == 1  # mostly f16
    assert cli.main(["export", "--model", str(folder), "--gguf", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(folder), "--gguf", str(out), "--overwrite"]) == 0
    (folder / "adapter_config.json").write_text("{}")
    assert cli.main(["export", "--model", str(folder), "--gguf", str(tmp_path / "b.gguf")]) == 2
    assert "holds a LoRA adapter" in capsys.readouterr().err


@pytest.mark.skipif(SMOKE, reason="~70 s on one core (the GGUF reload parses a 49k-token vocabulary "
                    "twice); runs when LONGLORA_KIT_PROFILE != smoke")
def test_smollm2_extend_merge_export_reload(smollm2_folder, tmp_path):
    """The acceptance run: SmolLM2-135M extended 8192 -> 16384 (PI), two LoRA+ steps with S2-Attn at 64
    tokens, merged, exported f32, reloaded with gguf_file=: the same logits, tokenizer and chat template."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    config = rope.extend_config(AutoConfig.from_pretrained(smollm2_folder), 16384)
    model = AutoModelForCausalLM.from_pretrained(smollm2_folder, config=config, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    model = lora.apply(s2attn.enable(model, "s2_attn"), "lora+").train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    text = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. " * 8
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :64]
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    merged = lora.merge(model)
    merged.set_attn_implementation("sdpa")
    merged.eval()

    path = export.export_gguf(merged, tokenizer, tmp_path / "smollm2-16k.gguf")
    meta = export.read_metadata(path)
    assert (meta["llama.context_length"], meta["llama.rope.scaling.factor"]) == (16384, 2.0)
    assert meta["llama.rope.scaling.original_context_length"] == 8192
    loaded, loaded_tokenizer = export.load_gguf(path, rope_parameters=merged.config.rope_parameters)
    probe = tokenizer(text, return_tensors="pt")["input_ids"][:, :128]
    torch.testing.assert_close(logits(loaded, probe), logits(merged, probe), rtol=0, atol=0)
    assert not loaded.config.tie_word_embeddings  # LoRA+ trained a copy of the tied embeddings
    messages = [{"role": "user", "content": "What is 12345 + 1?"}]
    assert loaded_tokenizer.apply_chat_template(messages) == tokenizer.apply_chat_template(messages)
    assert loaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    print(f"SmolLM2 extend/merge/export/reload: {time.perf_counter() - start:.0f} s")


def test_the_cli_offers_exactly_the_exported_dtypes():
    from longlora_kit.cli import build_parser

    export_parser = build_parser()._subparsers._group_actions[0].choices["export"]
    (dtype,) = [a for a in export_parser._actions if a.dest == "dtype"]
    assert tuple(dtype.choices) == export.DTYPES
