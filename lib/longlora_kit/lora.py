"""LoRA and LoRA+: which parameters a long-context extension trains, saves and merges.

**LoRA** (Hu et al., 2021) freezes a linear layer ``W`` (d_out × d_in) and learns a low-rank
update beside it::

    h = W x + (α/r) · B A x          A: r × d_in (random),  B: d_out × r (zero-initialised)

Because ``B = 0`` at the start, the wrapped model is *exactly* the pre-trained one on step 0. The
update ``ΔW = (α/r)·B·A`` has rank at most ``r`` and costs ``r·(d_in + d_out)`` parameters instead
of ``d_in·d_out``; after training it folds back in, ``W' = W + (α/r)·B·A``, so inference pays
nothing.

**LoRA+** (LongLoRA, Chen et al., ICLR 2024, §3.3) is the paper's finding that LoRA on the
attention projections alone does not adapt a model to a much longer context (Table 2, Llama-2-7B
at 32768: LoRA 11.44 vs full fine-tuning 8.08 perplexity, and raising the rank from 8 to 256 does
not help: 11.98), while *also* training the input embeddings and every normalisation layer closes
the gap (8.12). Those are cheap: for Llama-2-7B the embeddings are 1.94% of the parameters and
the norms 0.004% (Fig. 2c).

Methods of :func:`apply`:

============  =============================================  ============================
method        trains                                        how
============  =============================================  ============================
full          every parameter                               ``requires_grad_(True)``
lora          LoRA on ``targets``                           peft ``LoraConfig``
lora+         LoRA + input embeddings + every norm          + peft ``modules_to_save``
lora+embed    LoRA + input embeddings (Table 2 ablation)    + peft ``modules_to_save``
lora+norm     LoRA + every norm (Table 2 ablation)          + peft ``modules_to_save``
============  =============================================  ============================

The LM head stays frozen in every LoRA method. Embeddings and norms go through peft's
``modules_to_save`` (not a hand-set ``requires_grad``) so that :func:`save` stores them in the
adapter; the official code unfreezes them by hand, and its adapter loses them unless a separate
split script is run.

Example (a tiny Llama; 32,768 LoRA + 65,536 embedding + 1,152 norm parameters train)::

    >>> from longlora_kit.models import build_model, tiny_config
    >>> model = apply(build_model(tiny_config()), "lora+")
    >>> {row["kind"]: row["trainable"] for row in parameter_report(model) if row["trainable"]}
    {'lora': 32768, 'embedding': 65536, 'norm': 1152}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .config import METHODS  # the one list of methods (config sits below lora, memory and the CLI)
from .families import FAMILIES, is_norm
from .runs.atomic import atomic_write, read_json, recover

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
KINDS = ("lora", "embedding", "norm", "head", "linear", "other")

#: What each method trains besides LoRA (``None``: no LoRA at all, everything trains).
_EXTRAS: dict[str, tuple[str, ...] | None] = {
    "full": None,
    "lora": (),
    "lora+": ("embedding", "norm"),
    "lora+embed": ("embedding",),
    "lora+norm": ("norm",),
}

#: The file :func:`save` writes beside the weights: what was trained, on which base, with which RoPE.
RUN_FILE = "longlora_run.json"
FIX = "re-save the model with lora.save"
_ARCHITECTURE_FIELDS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
)


# ---------------------------------------------------------------------------------------------
# apply


def _is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


_is_norm = is_norm  # by module type (families.is_norm): GemmaRMSNorm, GPT-NeoX's LayerNorm, q/k norms


def default_targets(model) -> tuple[str, ...]:
    """The attention projections LoRA adapts in ``model``'s family (``families.FAMILIES``): q/k/v/o, or
    the fused ones (Phi-3 ``qkv_proj`` + ``o_proj``, GPT-NeoX ``query_key_value`` + ``dense``).
    A family the kit has not listed gets q/k/v/o (and apply's check names its real linear layers)."""
    family = FAMILIES.get(getattr(getattr(model, "config", None), "model_type", None))
    return family.lora_targets if family else DEFAULT_TARGETS


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _modules_to_save(model, extras: Sequence[str]) -> list[str]:
    """Leaf names for peft's ``modules_to_save`` (matched as name suffixes), e.g. ['embed_tokens', 'norm']."""
    names: list[str] = []
    if "embedding" in extras:
        embedding = model.get_input_embeddings()
        names += [_leaf(n) for n, m in model.named_modules() if m is embedding]
    if "norm" in extras:
        names += [_leaf(n) for n, m in model.named_modules() if _is_norm(m)]
    return sorted(set(names))


def apply(
    model,
    method: str,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    targets: Sequence[str] | None = None,
):
    """Make ``model`` trainable the way ``method`` says; return the model ready to train.

    ``"full"`` returns ``model`` itself with every parameter trainable. The LoRA methods wrap it
    (in place) in a peft ``PeftModelForCausalLM``: LoRA of rank ``r`` and scale ``alpha / r`` on
    every linear layer named in ``targets`` (default: the family's attention projections,
    :func:`default_targets`), plus the embeddings and/or norms for ``lora+``,
    ``lora+embed`` and ``lora+norm``. Works on meta-device models too (for counting).

    >>> from longlora_kit.models import build_model, tiny_config
    >>> apply(build_model(tiny_config()), "lora", r=4).peft_config["default"].r
    4
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; choose one of {', '.join(METHODS)}")
    if _is_peft(model):
        raise ValueError("model already carries a peft adapter; apply a method to a fresh base model")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r={r!r}: the LoRA rank must be an integer >= 1 (the paper uses r=8)")
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r}: the LoRA scale alpha must be > 0 (the paper uses alpha=16)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r}: must be in [0, 1)")

    if method == "full":
        model.requires_grad_(True)
        return model

    targets = default_targets(model) if targets is None else targets
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    if not targets:
        raise ValueError("targets is empty; name the linear layers to adapt, e.g. ('q_proj', 'v_proj')")
    linear_leaves = sorted({_leaf(n) for n, m in model.named_modules() if isinstance(m, nn.Linear)})
    missing = [t for t in targets if t not in linear_leaves]
    if missing:
        raise ValueError(
            f"targets {missing} are not linear layers of this model; its linear layers are {linear_leaves}"
        )

    from peft import LoraConfig, get_peft_model

    extras = _EXTRAS[method]
    modules_to_save = _modules_to_save(model, extras)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        modules_to_save=modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)

    # modules_to_save matches by suffix ("norm" also catches "input_layernorm"): check nothing else slipped in
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in peft_model.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            inner = module.original_module
            wanted = ("norm" in extras and _is_norm(inner)) or (
                "embedding" in extras and isinstance(inner, nn.Embedding)
            )
            if not wanted:
                raise ValueError(f"modules_to_save {modules_to_save} also matched {name!r}; rename the module")
    return peft_model


def method_of(model) -> str:
    """The method a model was prepared with, read back from its peft config ('full' when there is none)."""
    if not _is_peft(model):
        return "full"
    config = model.peft_config[model.active_adapter]
    saved = set(config.modules_to_save or ())
    base = model.get_base_model()
    embedding_leaf = {_leaf(n) for n, m in base.named_modules() if m is base.get_input_embeddings()}
    # a ModulesToSaveWrapper hides the inner class from _is_norm, so look at the original modules
    has_embed = bool(saved & embedding_leaf)
    has_norm = bool(saved - embedding_leaf)
    return {(False, False): "lora", (True, True): "lora+", (True, False): "lora+embed"}.get(
        (has_embed, has_norm), "lora+norm"
    )


# ---------------------------------------------------------------------------------------------
# parameter report


def _logical_name(name: str) -> str:
    """The parameter's name in the plain model: peft's wrapper segments removed."""
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    for segment in (".modules_to_save.default", ".base_layer"):
        name = name.replace(segment, "")
    return name


def _kind(module_name: str, module: nn.Module, head_name: str | None) -> str:
    parts = module_name.split(".")
    if any(p.startswith("lora_") for p in parts):
        return "lora"
    if _is_norm(module):
        return "norm"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if head_name is not None and _logical_name(module_name) == head_name:
        return "head"
    if isinstance(module, nn.Linear):
        return "linear"
    return "other"


def parameter_report(model) -> list[dict]:
    """Parameters by kind, each counted once: one row per kind in ``KINDS``.

    Each row: ``kind``, ``parameters``, ``trainable``, ``percent`` (share of all parameters,
    LoRA included), ``trainable_percent``. Kinds: ``lora`` (A and B matrices), ``embedding``
    (input table), ``norm`` (every RMSNorm), ``head`` (the LM head; 0 when tied to the
    embeddings, whose row then carries it), ``linear`` (attention and MLP weights), ``other``.

    peft keeps two copies of every ``modules_to_save`` module: the frozen original and the trained
    copy. Only the copy is used, so only it is counted (``get_nb_trainable_parameters`` counts
    both in its total). Tied tensors count once. Works on meta-device models (shapes only).
    """
    base = model.get_base_model() if _is_peft(model) else model
    head = base.get_output_embeddings()
    head_name = next((n for n, m in base.named_modules() if m is head), None)
    counts = {kind: [0, 0] for kind in KINDS}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if ".original_module" in f".{module_name}":  # peft's frozen duplicate of a modules_to_save module
            continue
        kind = _kind(module_name, module, head_name)
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            counts[kind][0] += param.numel()
            counts[kind][1] += param.numel() if param.requires_grad else 0
    total = sum(n for n, _ in counts.values())
    return [
        dict(
            kind=kind,
            parameters=n,
            trainable=t,
            percent=100.0 * n / total,
            trainable_percent=100.0 * t / total,
        )
        for kind, (n, t) in counts.items()
    ]


def report_frame(report_or_model):
    """``parameter_report`` as a pandas DataFrame indexed by kind, with a ``total`` row."""
    import pandas as pd

    rows = report_or_model if isinstance(report_or_model, list) else parameter_report(report_or_model)
    frame = pd.DataFrame(rows).set_index("kind")
    frame.loc["total"] = frame.sum(numeric_only=True)
    return frame.astype({"parameters": "int64", "trainable": "int64"})


def trainable_names(model) -> list[str]:
    """Names (as in the plain model, peft wrappers removed) of the trainable parameters."""
    return [_logical_name(n) for n, p in model.named_parameters() if p.requires_grad]


def parameter_budget(architectures: Sequence[str], methods: Sequence[str] = ("full", "lora", "lora+"), **lora):
    """Trainable parameters per (architecture, method), built config-only on the meta device.

    Returns a pandas DataFrame with columns ``architecture``, ``method``, ``parameters`` (of the
    base model), ``trainable``, ``trainable_percent`` (of the base model's parameters) and one
    column per kind (trainable count). For a model with tied embeddings (SmolLM2), LoRA+ trains
    a copy of the embedding table while the LM head keeps the frozen original: they are untied.
    """
    import pandas as pd

    from .architectures import meta_model
    from .models import count_parameters

    rows = []
    for name in architectures:
        base_parameters = count_parameters(meta_model(name))
        for method in methods:
            report = parameter_report(apply(meta_model(name), method, **lora))
            trainable = sum(row["trainable"] for row in report)
            row = dict(architecture=name, method=method, parameters=base_parameters, trainable=trainable)
            row["trainable_percent"] = 100.0 * trainable / base_parameters
            row.update({f"{r['kind']}": r["trainable"] for r in report})
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# save / load / merge


def _run_record(model) -> dict:
    base = model.get_base_model() if _is_peft(model) else model
    config = base.config
    record = {
        "format": 1,
        "method": method_of(model),
        "architecture": {f: getattr(config, f, None) for f in _ARCHITECTURE_FIELDS},
        "max_position_embeddings": config.max_position_embeddings,
        "rope_parameters": dict(getattr(config, "rope_parameters", None) or {}),
    }
    if _is_peft(model):
        lora = model.peft_config[model.active_adapter]
        record["lora"] = {
            "r": lora.r,
            "alpha": lora.lora_alpha,
            "targets": sorted(lora.target_modules),
            "modules_to_save": sorted(lora.modules_to_save or ()),
        }
    return record


def _same_run(a: dict, b: dict) -> bool:
    keys = ("method", "architecture", "max_position_embeddings", "rope_parameters", "lora")
    return all(a.get(k) == b.get(k) for k in keys)


def save(model, directory, overwrite: bool = False) -> Path:
    """Save ``model`` atomically to ``directory``; return its path.

    LoRA methods write the peft adapter (LoRA matrices plus the trained embedding/norm copies:
    ``adapter_model.safetensors``, ``adapter_config.json``); ``full`` writes the whole model. A
    ``longlora_run.json`` beside them records the method, the base architecture and its RoPE.

    Atomic (``runs.atomic_write``): everything is written to a temporary directory in the same
    parent, then renamed into place, so ``directory`` is either the old save or the new one, never
    half of each; a failed write removes the temporary directory. An existing save of the *same run* (same method, LoRA
    settings, architecture and RoPE: a later checkpoint) is replaced; anything else already in
    ``directory`` raises ``ValueError`` unless ``overwrite=True``.
    """
    directory = Path(directory)
    record = _run_record(model)
    if directory.exists() and not overwrite:
        if not directory.is_dir():
            raise ValueError(f"directory={str(directory)!r} is a file; choose a directory path")
        if any(directory.iterdir()):
            old = read_json(directory / RUN_FILE, FIX) if (directory / RUN_FILE).is_file() else None
            if old is None or not _same_run(old, record):
                what = f"a different run (method {old.get('method')!r})" if old else "files of something else"
                raise ValueError(
                    f"directory={str(directory)!r} already holds {what}; pass overwrite=True to replace it "
                    "or choose another directory"
                )
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover(directory)  # finish a save a kill interrupted, delete leftovers
    with atomic_write(directory, directory=True) as tmp:
        model.save_pretrained(tmp)
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return directory


def load(base_model, directory, trainable: bool = False):
    """Load a :func:`save` directory onto ``base_model``; return the model as it was trained.

    ``base_model`` must be the same architecture with the same RoPE (for an extended model, build
    the base from the *extended* config); it is wrapped in place for LoRA methods and its weights
    are overwritten for ``full``. ``trainable=True`` keeps the adapter trainable (to resume).
    """
    directory = Path(directory)
    run_file = directory / RUN_FILE
    if not run_file.is_file():
        raise ValueError(f"directory={str(directory)!r} is not a longlora_kit save (no {RUN_FILE}); use save() first")
    if _is_peft(base_model):
        raise ValueError("base_model already carries a peft adapter; pass a fresh base model")
    record = read_json(run_file, FIX)
    _check_files(directory, record)
    config = base_model.config
    ours = {f: getattr(config, f, None) for f in _ARCHITECTURE_FIELDS}
    if ours != record["architecture"]:
        diff = {k: (ours[k], v) for k, v in record["architecture"].items() if ours.get(k) != v}
        raise ValueError(f"base_model does not match the saved architecture: (base, saved) = {diff}")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope != record["rope_parameters"]:
        raise ValueError(
            f"base_model has rope_parameters={rope} but the run was trained with {record['rope_parameters']}; "
            "build the base from the extended config (rope.extend_config) before loading"
        )
    if record["method"] == "full":
        from safetensors.torch import load_file

        state = {}
        for file in sorted(directory.glob("*.safetensors")):
            state.update(load_file(file))
        missing, unexpected = base_model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
        if unexpected or set(missing) - tied:
            raise ValueError(f"saved weights do not fit base_model: missing {missing}, unexpected {unexpected}")
        base_model.requires_grad_(trainable)
        return base_model

    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base_model, directory, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as err:  # e.g. a size mismatch from edited shapes
        first = " ".join(line.strip() for line in str(err).splitlines()[:2])[:300]  # not one line per tensor
        raise ValueError(f"the adapter in {str(directory)!r} does not load onto base_model ({first}); "
                         "re-save it with lora.save") from None


def _check_files(directory: Path, record: dict) -> None:
    """The files a save of ``record``'s method must hold, and the LoRA rank both records agree on."""
    method = record.get("method")
    needed = ("adapter_config.json", "adapter_model.safetensors") if method != "full" else ()
    missing = [name for name in needed if not (directory / name).is_file()]
    if method == "full" and not any(directory.glob("*.safetensors")):  # one file, or shards
        missing.append("*.safetensors")
    if method not in METHODS or missing:
        raise ValueError(f"{str(directory)!r} is an incomplete save (method {method!r}, missing {missing}); "
                         "re-save it with lora.save")
    saved_r = record.get("lora", {}).get("r")
    peft_r = read_json(directory / "adapter_config.json", FIX).get("r") if method != "full" else None
    if saved_r != peft_r:
        raise ValueError(f"{str(directory)!r} disagrees with itself on the LoRA rank ({RUN_FILE}: r={saved_r}, "
                         f"adapter_config.json: r={peft_r}); the files were edited: re-save the adapter")


def merge(model):
    """Fold the adapter into the weights; return a plain ``LlamaForCausalLM`` (W' = W + (α/r)·B·A).

    The trained embedding and norm copies replace the originals. The model's config (with any
    extended ``rope_parameters``) is kept, so ``save_pretrained`` writes it into ``config.json``;
    LongLoRA's own merge script drops it. The peft wrapper is consumed: use the returned model.
    A ``full`` model is returned as it is.
    """
    if not _is_peft(model):
        return model
    merged = model.merge_and_unload()
    merged.requires_grad_(False)
    return merged


# ---------------------------------------------------------------------------------------------
# notebook settings


def notebook_settings(profile: str | None = None) -> dict:
    """Sizes and step counts for notebooks/03_lora_plus.ipynb, chosen by the profile (``budgets.NOTEBOOK_03``).

    ``short_len``/``long_len``: pre-training and extension lengths (PI factor long/short);
    ``ladder``: how far up the architecture ladder the budget table goes (70B takes ~5 s per method).
    """
    from .budgets import NOTEBOOK_03, at

    return at(NOTEBOOK_03, profile)


__all__ = [
    "DEFAULT_TARGETS",
    "KINDS",
    "METHODS",
    "apply",
    "default_targets",
    "load",
    "merge",
    "method_of",
    "notebook_settings",
    "parameter_budget",
    "parameter_report",
    "report_frame",
    "save",
    "trainable_names",
]
