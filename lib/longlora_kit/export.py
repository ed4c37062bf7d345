r"""The extended model out as GGUF: one file that llama.cpp-based runtimes (llama.cpp, Ollama, LM Studio) run.

After :func:`longlora_kit.lora.merge` the model is a plain ``LlamaForCausalLM`` whose config carries
the extended RoPE (say ``{"rope_type": "linear", "factor": 4.0}``, ``max_position_embeddings`` 8192).
A GGUF file is a header of typed key/value metadata followed by the tensors; writing one takes
three things that are easy to get silently wrong:

1. **Names.** llama.cpp looks tensors up by its own names:

   =========================================  ======================
   transformers                               GGUF
   =========================================  ======================
   model.embed_tokens.weight                  token_embd.weight
   model.layers.N.input_layernorm             blk.N.attn_norm
   model.layers.N.self_attn.{q,k,v,o}_proj    blk.N.attn_{q,k,v,output}
   model.layers.N.post_attention_layernorm    blk.N.ffn_norm
   model.layers.N.mlp.{gate,up,down}_proj     blk.N.ffn_{gate,up,down}
   model.norm.weight                          output_norm.weight
   lm_head.weight                             output.weight (absent when tied)
   =========================================  ======================

2. **The Q/K row order.** transformers rotates dimension ``i`` of a head with ``i + d/2``
   (``rotate_half``); llama.cpp's Llama rotates neighbours ``2i`` and ``2i+1``. The same attention
   scores come out if the rows of ``W_q`` and ``W_k`` are re-ordered per head (:func:`permute_qk`);
   transformers' GGUF loader undoes it. Forget it and the file loads fine and talks nonsense.

3. **The RoPE scaling** (:func:`rope_metadata`): ``llama.rope.scaling.type`` (linear = position
   interpolation, yarn), ``.factor`` and ``.original_context_length``, and ``llama.context_length``
   set to the *extended* length, so a runtime uses the extended context without extra flags.

**Reloading in transformers.** ``from_pretrained(folder, gguf_file=name)`` rebuilds the model, its
config and its tokenizer from the file, but transformers 5.23 rebuilds RoPE scaling only for
gpt-oss: a Llama GGUF comes back with *default* RoPE. Pass the extended ``rope_parameters`` to the
loader (:func:`load_gguf` does); llama.cpp itself reads the metadata.

Example (a tiny random Llama with the kit's tokenizer, written and read back)::

    >>> import tempfile
    >>> from longlora_kit import rope
    >>> from longlora_kit.models import build_model, tiny_config
    >>> from longlora_kit.tokenizer import load_tokenizer
    >>> config = rope.extend_config(tiny_config(vocab_size=4096), 1024)     # PI, factor 4
    >>> path = export_gguf(build_model(config), load_tokenizer(), tempfile.mkdtemp() + "/tiny.gguf")
    >>> meta = read_metadata(path)
    >>> meta["llama.context_length"], meta["llama.rope.scaling.type"], meta["llama.rope.scaling.factor"]
    (1024, 'linear', 4.0)
    >>> meta["llama.rope.scaling.original_context_length"], meta["tokenizer.ggml.pre"]
    (256, 'smollm')
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .rope import rope_parameters_of
from .runs.atomic import atomic_write

DTYPES = ("f32", "f16")
ADAPTER_FILE = "adapter_config.json"  # peft's marker: a folder with it still holds an unmerged adapter

_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_TOP_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}

# llama.cpp's pre-tokenizer names for the byte-level BPE layouts the kit meets (tokenizer.json form):
# plain GPT-2 splitting, and GPT-2 splitting after single digits (SmolLM's and the kit's tokenizer).
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_PRE_TYPES = {
    json.dumps(_BYTE_LEVEL, sort_keys=True): "gpt2",
    json.dumps({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
               sort_keys=True): "smollm",
}
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5  # gguf.TokenType values


def tensor_name(name: str) -> str:
    """The GGUF name of a ``LlamaForCausalLM`` parameter.

    >>> tensor_name("model.layers.3.self_attn.o_proj.weight"), tensor_name("lm_head.weight")
    ('blk.3.attn_output.weight', 'output.weight')
    """
    stem, _, suffix = name.rpartition(".")
    if stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{suffix}"
    parts = stem.split(".", 3)  # model, layers, N, rest
    if parts[:2] == ["model", "layers"] and len(parts) == 4 and parts[3] in _LAYER_NAMES:
        return f"blk.{parts[2]}.{_LAYER_NAMES[parts[3]]}.{suffix}"
    raise ValueError(f"parameter {name!r} has no GGUF name for the llama architecture; export plain Llama models")


def permute_qk(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Re-order the rows of a Q or K projection from transformers' RoPE pairing to llama.cpp's.

    Per head, transformers pairs dimension ``i`` with ``i + d/2``; llama.cpp pairs ``2i`` with
    ``2i + 1``. Row ``j`` of half ``h`` moves to row ``2j + h``, so each pair ends up side by side
    (``n_heads``: query heads for Q, key/value heads for K). Rows of one head of width 4:

    >>> permute_qk(np.arange(4)[:, None], n_heads=1)[:, 0].tolist()
    [0, 2, 1, 3]
    """
    rows = weight.shape[0]
    pairs = weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])  # (H, half, d/2, ...)
    return pairs.swapaxes(1, 2).reshape(weight.shape)  # (H, d/2, half, ...): pairs adjacent


def rope_metadata(config) -> dict:
    """The ``llama.rope.*`` keys for ``config``'s RoPE, scaling included.

    >>> from longlora_kit import rope
    >>> from longlora_kit.models import tiny_config
    >>> rope_metadata(rope.extend_config(tiny_config(), 1024, method="yarn"))["llama.rope.scaling.type"]
    'yarn'
    """
    params = rope_parameters_of(config)
    rope_type, head_dim = params["rope_type"], _head_dim(config)
    meta = {"llama.rope.freq_base": float(params["rope_theta"]), "llama.rope.dimension_count": head_dim}
    if rope_type == "default":  # includes NTK-aware extension: only the base changed
        return meta
    if rope_type not in ("linear", "yarn"):
        raise ValueError(
            f"rope_type={rope_type!r} has no GGUF form the kit writes (llama.cpp runs linear and yarn scaling); "
            "extend with method='linear' (LongLoRA's position interpolation) or 'yarn'"
        )
    factor = float(params["factor"])
    original = params.get("original_max_position_embeddings") or round(config.max_position_embeddings / factor)
    meta |= {
        "llama.rope.scaling.type": rope_type,
        "llama.rope.scaling.factor": factor,
        "llama.rope.scaling.original_context_length": int(original),
        "llama.rope.scaling.finetuned": True,  # LongLoRA fine-tuned at the extended length
    }
    if rope_type == "yarn":
        for ours, theirs in (("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow"),
                             ("attention_factor", "attn_factor")):
            if params.get(ours) is not None:
                meta[f"llama.rope.scaling.{theirs}"] = float(params[ours])
    return meta


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def model_metadata(config) -> dict:
    """The ``llama.*`` hyper-parameters llama.cpp (and transformers' GGUF loader) rebuild the model from."""
    check_llama(config)
    meta = {
        "llama.context_length": config.max_position_embeddings,  # the extended length
        "llama.embedding_length": config.hidden_size,
        "llama.block_count": config.num_hidden_layers,
        "llama.feed_forward_length": config.intermediate_size,
        "llama.attention.head_count": config.num_attention_heads,
        "llama.attention.head_count_kv": config.num_key_value_heads,
        "llama.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "llama.vocab_size": config.vocab_size,
    }
    if _head_dim(config) * config.num_attention_heads != config.hidden_size:  # llama.cpp's default otherwise
        meta["llama.attention.key_length"] = meta["llama.attention.value_length"] = _head_dim(config)
    return meta | rope_metadata(config)


def check_llama(config) -> None:
    """Refuse what the llama GGUF architecture cannot hold, naming the field."""
    if config.model_type != "llama":
        raise ValueError(
            f"model_type={config.model_type!r}: GGUF export writes the Llama family only (SmolLM2, Llama-2/3 "
            "layouts); other families are trained by the kit but not exported yet"
        )
    for field in ("attention_bias", "mlp_bias"):
        if getattr(config, field, False):
            raise ValueError(f"{field}=True: the kit's GGUF export writes bias-free Llama layers only")
    if config.hidden_act != "silu":
        raise ValueError(f"hidden_act={config.hidden_act!r}: llama.cpp's llama architecture uses SiLU")


def tokenizer_metadata(tokenizer, vocab_size: int) -> dict:
    """The ``tokenizer.*`` keys for a byte-level BPE (GPT-2 style) fast tokenizer.

    Tokens in id order (padded to the model's ``vocab_size`` with unused ``[PAD<id>]`` entries),
    their types (special added tokens are CONTROL), the merges, the special ids and the chat
    template. No scores: a BPE applies merges by rank, and llama.cpp's own converter writes none.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    pre = _PRE_TYPES.get(json.dumps(state.get("pre_tokenizer"), sort_keys=True))
    if state["model"]["type"] != "BPE" or state.get("normalizer") is not None or pre is None:
        raise ValueError(
            f"tokenizer: only byte-level BPE tokenizers (GPT-2 style, as SmolLM2's and the kit's) are exported; "
            f"this one is {state['model']['type']} with pre_tokenizer {state.get('pre_tokenizer')}"
        )
    vocab = tokenizer.get_vocab()  # added tokens included
    if sorted(vocab.values()) != list(range(len(vocab))) or len(vocab) > vocab_size:
        raise ValueError(f"tokenizer: its {len(vocab)} ids must be 0..n-1 and fit the model's vocab_size={vocab_size}")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [_UNUSED] * vocab_size
    for token, index in vocab.items():
        tokens[index], types[index] = token, _NORMAL
    for index, added in tokenizer.added_tokens_decoder.items():
        types[index] = _CONTROL if added.special else _USER_DEFINED
    meta = {
        "tokenizer.ggml.model": "gpt2",  # llama.cpp's name for byte-level BPE
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]],
        "tokenizer.ggml.add_bos_token": bool(getattr(tokenizer, "add_bos_token", False)),
    }
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        if getattr(tokenizer, f"{name}_token_id", None) is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = getattr(tokenizer, f"{name}_token_id")
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        meta["tokenizer.chat_template"] = tokenizer.chat_template
    return meta


def gguf_tensors(model, dtype: str = "f32"):
    """``(gguf_name, array)`` for every tensor to write: Q/K permuted, 2-D weights in ``dtype``.

    Norms stay f32 at any ``dtype`` (as llama.cpp's converter keeps 1-D tensors). The LM head is
    written only when it is not the embedding table itself (LoRA+ unties SmolLM2's: it trains a copy).
    """
    config = model.config
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    for name, param in model.state_dict().items():
        if name == "lm_head.weight" and head.data_ptr() == embedding.data_ptr():
            continue
        array = param.detach().float().cpu().numpy()
        if ".self_attn.q_proj." in name:
            array = permute_qk(array, config.num_attention_heads)
        elif ".self_attn.k_proj." in name:
            array = permute_qk(array, config.num_key_value_heads)
        if dtype == "f16" and array.ndim == 2:
            array = array.astype(np.float16)
        yield tensor_name(name), np.ascontiguousarray(array)


def export_gguf(model, tokenizer, path, dtype: str = "f32", overwrite: bool = False) -> Path:
    """Write a merged Llama ``model`` and its ``tokenizer`` to the GGUF file ``path``; return the path.

    ``dtype``: ``"f32"`` (exact) or ``"f16"`` (half the size). Written beside ``path`` and renamed
    into place, so a failed export leaves no half file. An existing ``path`` is refused unless
    ``overwrite=True``.
    """
    import gguf

    if hasattr(model, "peft_config"):
        raise ValueError("model still carries a LoRA adapter; fold it in first: model = lora.merge(model)")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"path={str(path)!r} exists; pass overwrite=True (--overwrite) or choose another file")
    metadata = model_metadata(model.config) | tokenizer_metadata(tokenizer, model.config.vocab_size)
    metadata["general.name"] = getattr(model.config, "name_or_path", "") or "longlora-kit model"
    metadata["general.file_type"] = int(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")  # writes general.architecture itself
        for key, value in metadata.items():
            _add(writer, key, value)
        for name, array in gguf_tensors(model, dtype):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _add(writer, key: str, value) -> None:
    """One metadata entry, typed as llama.cpp reads it (ints uint32, token types int32, floats f32)."""
    from gguf import GGUFValueType as T

    def kind(v):
        return {bool: T.BOOL, int: T.UINT32, float: T.FLOAT32, str: T.STRING}[type(v)]

    if isinstance(value, list):
        sub = T.INT32 if isinstance(value[0], int) else kind(value[0])
        writer.add_key_value(key, value, T.ARRAY, sub)
    else:
        writer.add_key_value(key, value, kind(value))


def read_metadata(path) -> dict:
    """Every metadata key of a GGUF file as Python values (``gguf.GGUFReader``)."""
    from gguf import GGUFReader

    return {key: field.contents() for key, field in GGUFReader(str(path)).fields.items()}


def load_gguf(path, rope_parameters: dict | None = None, dtype=None):
    """``(model, tokenizer)`` loaded back by transformers from the GGUF file ``path``.

    ``rope_parameters``: the extended model's (``merged.config.rope_parameters``); transformers 5.23
    does not rebuild RoPE scaling from a Llama GGUF, so without it the model has default RoPE.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    extra = {"rope_parameters": dict(rope_parameters)} if rope_parameters else {}
    # the config is parsed from the file once (8 s for SmolLM2's 49k-token vocabulary), then handed on
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, **extra)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, config=config, dtype=dtype or torch.float32
    )
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def export_folder(model_dir, path, dtype: str = "f32", overwrite: bool = False, tokenizer_dir=None) -> Path:
    """Export a merged ``save_pretrained`` folder (weights, config, tokenizer) to the GGUF file ``path``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"model={str(model_dir)!r} is not a model folder (no config.json); pass a merged model folder")
    if (model_dir / ADAPTER_FILE).is_file():
        raise ValueError(
            f"model={str(model_dir)!r} holds a LoRA adapter ({ADAPTER_FILE}), not merged weights; merge first: "
            "lora.merge(lora.load(base, DIR)).save_pretrained(MERGED_DIR), then export MERGED_DIR"
        )
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
    if model_type != "llama":
        raise ValueError(f"model={str(model_dir)!r} is model_type={model_type!r}; GGUF export writes Llama models only")
    if Path(path).exists() and not overwrite:  # before the slow load
        raise ValueError(f"gguf={str(path)!r} exists; pass --overwrite to replace it or choose another file")
    tokenizer_dir = Path(tokenizer_dir or model_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise ValueError(f"no tokenizer.json in {str(tokenizer_dir)!r}; pass --tokenizer DIR (a folder with one)")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return export_gguf(model, AutoTokenizer.from_pretrained(tokenizer_dir), path, dtype, overwrite)
