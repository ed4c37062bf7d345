"""Presets: paper hyperparameters, architectures that build on the meta device, loading from local folders."""

import dataclasses

import pytest
import torch

from longlora_kit.architectures import KNOWN_ARCHITECTURES
from longlora_kit.models import build_model, tiny_config
from longlora_kit.presets import PRESET_NAMES, describe, get_preset, load_model_and_tokenizer

# tiny: the smoke profile's recipe model (conftest sets smoke) with the kit's 4096-token vocabulary
PARAMS = {"tiny": 623_424, "smollm2-135m": 134_515_008, "tinyllama-1.1b": 1_100_048_384,
          "llama2-7b": 6_738_415_616}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_builds_on_meta_with_published_size(name):
    preset = get_preset(name)
    model = preset.build_meta()
    assert next(model.parameters()).device.type == "meta"
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_paper_hyperparameters(name):
    preset = get_preset(name)
    assert preset.betas == (0.9, 0.95) and preset.weight_decay == 0.0
    assert preset.method == "lora+" and (preset.lora_r, preset.lora_alpha) == (8, 16)
    assert preset.attention == "s2" and preset.group_size_ratio == 0.25
    assert preset.rope_method == ("yarn" if name == "tiny" else "linear")  # tiny: the recipe's YaRN (budgets)
    assert preset.rope_factor == -(-preset.target_context // preset.original_context)  # ceil
    assert preset.micro_batch * preset.grad_accum() == preset.global_batch
    if name != "tiny":
        assert preset.global_batch == 64 and preset.max_steps == 1000 and preset.dtype == "bfloat16"


def test_llama2_7b_is_the_paper_setup():
    p = get_preset("llama2-7b")
    assert p.learning_rate == 2e-5 and p.model_id == "meta-llama/Llama-2-7b-hf"
    assert p.grad_accum(world_size=8) == 8  # 1 x 8 x 8 GPUs = 64, as the paper
    assert get_preset("llama2-7b", target_context=100_000).rope_factor == 25  # fine-tune.py: ceil(100k / 4096)
    config = get_preset("llama2-7b", target_context=32768).extended_config()
    assert config.rope_parameters["rope_type"] == "linear" and config.rope_parameters["factor"] == 8.0
    assert config.max_position_embeddings == 32768
    # learning rate shrinks with size, as in the paper (2e-5 for 7B, 1e-5 for 70B)
    lrs = [get_preset(n).learning_rate for n in ("smollm2-135m", "tinyllama-1.1b", "llama2-7b")]
    assert lrs == sorted(lrs, reverse=True)


def test_architectures_come_from_the_shared_table():
    assert get_preset("tinyllama-1.1b").architecture == KNOWN_ARCHITECTURES["TinyLlama-1.1B"]
    assert describe(get_preset("tiny"))["rope_factor"] == 4


def test_bad_names_and_fields():
    with pytest.raises(ValueError, match="neither a preset"):
        get_preset("gpt-5")
    with pytest.raises(ValueError, match="unknown preset fields"):
        get_preset("tiny", learning_rat=1e-3)
    with pytest.raises(ValueError, match="world_size"):
        get_preset("llama2-7b").grad_accum(world_size=3)
    with pytest.raises(ValueError, match="no pre-trained weights"):
        load_model_and_tokenizer("tiny")


def test_offline_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        load_model_and_tokenizer("llama2-7b")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        get_preset("someone/some-llama")


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["the grass is green. the sky is blue."] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


@pytest.fixture
def saved_tiny(tmp_path):
    model = build_model(tiny_config(num_hidden_layers=2))
    model.save_pretrained(tmp_path / "tiny-llama")
    _tokenizer().save_pretrained(tmp_path / "tiny-llama")
    return tmp_path / "tiny-llama", model


def test_load_from_local_folder(saved_tiny):
    folder, reference = saved_tiny
    preset = get_preset(str(folder))  # a folder becomes a preset: its architecture, a size-matched lr
    assert preset.model_id == str(folder) and preset.architecture["num_hidden_layers"] == 2
    assert preset.learning_rate == 1e-3 and preset.target_context == 4 * 256
    model, tokenizer = load_model_and_tokenizer(preset, dtype=torch.float32)
    ids = torch.tensor([tokenizer("the grass is green")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference.eval()(ids).logits)
    # a named preset with a local copy of the weights (how llama2-7b is used offline)
    model2, _ = load_model_and_tokenizer("llama2-7b", dtype=torch.float32, model_id=str(folder))
    assert model2.dtype == torch.float32
    bf16, _ = load_model_and_tokenizer(preset, dtype=None)
    assert bf16.dtype == torch.bfloat16  # the preset's dtype by default


def test_local_folder_without_tokenizer_or_config(tmp_path):
    build_model(tiny_config(num_hidden_layers=1)).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="no tokenizer"):
        load_model_and_tokenizer(str(tmp_path / "m"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        get_preset(str(tmp_path / "empty"))


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("tiny").learning_rate = 1.0


def test_extend_recipe_from_a_hub_preset(saved_tiny, tmp_path):
    """``extend --preset llama2-7b --base <folder>``: the paper's recipe, the folder's weights and tokenizer."""
    from longlora_kit.train import extension_config, train

    folder, _ = saved_tiny
    config = extension_config(str(folder), str(tmp_path / "run"), "llama2-7b")
    assert (config.lr, config.grad_accum, config.seq_len, config.attention) == (2e-5, 64, 8192, "s2")
    assert config.tokenizer == str(folder) and config.gradient_checkpointing
    small = extension_config(str(folder), str(tmp_path / "run"), "llama2-7b", seq_len=64, target_length=512,
                             max_steps=1, grad_accum=1, n_documents=20, progress=False, measure_memory=False)
    result = train(small)
    from transformers import AutoTokenizer

    from longlora_kit.data import load_tokenizer

    assert result.steps == 1
    assert len(result.tokenizer) == len(AutoTokenizer.from_pretrained(folder)) != len(load_tokenizer())
    assert result.model.config.rope_parameters["factor"] == 2.0  # 256 -> 512: linear PI x2
