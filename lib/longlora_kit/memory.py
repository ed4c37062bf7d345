"""Will it fit? Peak training memory by component, the longest context that fits, and step FLOPs.

**Memory.** The peak of a training micro-step comes at one of two instants: at the loss (every saved
activation plus the logits and their gradients) or, with gradient checkpointing, inside the backward pass
of a re-computed layer (the logits are gone by then). The larger one is reported, split into:

=====================  =======================================================================
component              bytes
=====================  =======================================================================
weights                every parameter once, plus peft's trainable copies (``modules_to_save``)
gradients              one per trainable parameter (live across gradient-accumulation steps)
optimizer states       AdamW ``m`` and ``v`` (+ fp32 master weights in mixed precision)
activations            tensors autograd saves for backward, per token per layer (see below)
attention workspace    the score matrix ``B·H·L·L_k`` when the kernel materialises it (eager)
logits and loss        ``logits.float()`` -> ``log_softmax`` output, its gradient, the logits' gradient
runtime                CUDA context + allocator slack (GPU only; 0 on CPU)
=====================  =======================================================================

Bytes per trainable parameter for (gradient, optimizer): fp32 (4, 8); bf16 (2, 4: AdamW keeps its
moments in the parameter dtype); mixed, the paper's DeepSpeed bf16 set-up (2, 12: bf16 gradient, fp32
master copy + two fp32 moments, the ZeRO paper's 16 bytes per parameter). ZeRO-2 divides gradients
and optimizer states by the number of GPUs, ZeRO-3 the weights too.

**Activations** are counted tensor by tensor from what autograd saves in a transformers Llama layer
(``a`` = bytes per activation element, h = width, f = MLP width, H·d = query width, per token)::

    RMSNorm x2       2·4h           (input upcast to fp32, saved by pow)
                     + 2·a·h        (normalised input, only when the norm weight trains: full, lora+)
    q/k/v input      a·h            (saved by the projections or by LoRA's A)
    q, k, v          a·(H·d + 2·K·d)  (saved by the attention kernel, after RoPE)
    attention out    a·H·d          (o_proj's input; fused kernels save the same tensor)
    LoRA             4·a·r          (A's output, saved by B)
    MLP              3·a·f          (gate out -> SiLU, SiLU out and up out -> product)
                     + a·h + a·f    (full FT only: inputs of the trained gate/up and down)

With gradient checkpointing only each layer's input (a·h) is kept, and one layer is recomputed at a
time in backward. The eager kernel adds the softmax matrix, ``4·H·L_k`` bytes per token (fp32), with
``L_k = L`` for full attention and ``L_k = G = L/4`` for S2-Attn; fused kernels (sdpa, flash) keep
O(L) instead.

**FLOPs** follow the paper's Table 11 (forward pass, 2 FLOPs per multiply-add, attention counted
over the whole ``L x L`` score matrix)::

    attention   4·L·L_k·H·d·layers        (QKᵀ and AV)        8192: 35.2 TFLOPs for Llama-2-7B
    projections 2·L·(2·h·H·d + 2·h·K·d)·layers                      35.2
    FFN         2·L·3·h·f·layers                                    70.9
    others      2·L·h·V (LM head) + elementwise (norms, RoPE, SiLU)  2.2      total 143.5

S2-Attn divides the attention term by 4 (``L_k = L/4``), e.g. 143.5 -> 117.1 at 8192. The attention
term is :func:`attention_cost`, the kit's one attention cost model (it also counts only the causal
pairs, and the score matrix's bytes, for notebook 02).

    >>> from longlora_kit.architectures import architecture_config
    >>> f = forward_flops(architecture_config("Llama-2-7B"), 8192)
    >>> round(f["attention"] / 1e12, 1), round(f["total"] / 1e12, 1)
    (35.2, 143.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import METHODS, check_attention  # the kit-wide spellings (config imports only the stdlib)

GIB = 2**30
PRECISIONS = ("fp32", "bf16", "mixed")
KERNELS = ("eager", "sdpa", "flash")
COMPONENTS = ("weights", "gradients", "optimizer_states", "activations", "attention_workspace",
              "logits_and_loss", "runtime")

# Bytes per element: (weights, gradient per trainable, optimizer per trainable, activation)
_BYTES = {"fp32": (4, 4, 8, 4), "bf16": (2, 2, 4, 2), "mixed": (2, 2, 12, 2)}
CUDA_RUNTIME_BYTES = int(1.0 * GIB)  # CUDA context, cuBLAS/flash workspaces and allocator slack (assumed)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; choose one of {', '.join(map(str, choices))}")


def _s2_group_size(context: int, group_size_ratio: float, name: str = "context") -> int:
    """G for S2-Attn by training's own rule (``s2attn.group_size_for``), so a suggested length trains."""
    from .s2attn import group_size_for  # imported late: memory stays torch-free unless S2 is asked for

    try:
        return group_size_for(context, group_size_ratio)
    except ValueError as err:
        raise ValueError(f"{name}={context}: {err}") from None


def check_gpu_gib(gpu_gib: float) -> None:
    if not (math.isfinite(gpu_gib) and gpu_gib > 0):  # nan would "fit" nothing and inf everything
        raise ValueError(f"gpu_gib={gpu_gib} must be a finite positive number of GiB, e.g. 80")


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder config the accounting needs (any family of ``families.py``)."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    mlp_matrices: int = 3  # gated MLP (gate, up, down); GPT-NeoX's is up -> GELU -> down: 2

    @classmethod
    def of(cls, config) -> Shape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(config.vocab_size, config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                   heads, getattr(config, "num_key_value_heads", None) or heads, head_dim,
                   bool(getattr(config, "tie_word_embeddings", False)),
                   2 if getattr(config, "model_type", None) == "gpt_neox" else 3)

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


# ---------------------------------------------------------------------------------------------- params

def parameter_counts(config, method: str = "lora+", lora_r: int = 8) -> dict[str, int]:
    """Parameters of the model and of what trains under ``method`` (LoRA on q/k/v/o, as the paper).

    ``added`` counts what peft adds to the model: the LoRA matrices, and for lora+ the trainable copies of
    embeddings and norms (``modules_to_save`` keeps the original frozen module and trains a copy).

    >>> from longlora_kit.models import tiny_config
    >>> parameter_counts(tiny_config(), "lora+")
    {'total': 922752, 'trainable': 99456, 'added': 99456}
    """
    _check_choice("method", method, METHODS)
    s = Shape.of(config)
    per_layer = 2 * s.hidden * s.q_width + 2 * s.hidden * s.kv_width + s.mlp_matrices * s.hidden * s.intermediate
    norms = (2 * s.layers + 1) * s.hidden
    embed = s.vocab * s.hidden
    total = embed * (1 if s.tied else 2) + s.layers * per_layer + norms
    lora = s.layers * lora_r * (2 * (s.hidden + s.q_width) + 2 * (s.hidden + s.kv_width))
    if method == "full":
        return {"total": total, "trainable": total, "added": 0}
    # lora+ trains copies of the embeddings and norms; lora+embed / lora+norm one of them; lora neither
    copies = (embed if method in ("lora+", "lora+embed") else 0) + (norms if method in ("lora+", "lora+norm") else 0)
    return {"total": total, "trainable": lora + copies, "added": lora + copies}


# ---------------------------------------------------------------------------------------------- memory

@dataclass
class MemoryEstimate:
    """Peak bytes by component (``components`` sums to ``total``) and the settings that produced it."""

    components: dict[str, int]
    settings: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.components.values())

    def gib(self) -> dict[str, float]:
        """Components in GiB (rounded to 3 decimals), plus ``total``."""
        out = {k: round(v / GIB, 3) for k, v in self.components.items()}
        out["total"] = round(self.total / GIB, 3)
        return out

    def fits(self, gpu_gib: float) -> bool:
        check_gpu_gib(gpu_gib)
        return self.total <= gpu_gib * GIB

    def __str__(self) -> str:
        rows = [f"{k:<20} {v / GIB:9.2f} GiB" for k, v in self.components.items()]
        return "\n".join([*rows, f"{'total':<20} {self.total / GIB:9.2f} GiB"])


def _activation_bytes_per_token_layer(s: Shape, method: str, a: int, lora_r: int, kernel: str) -> int:
    """Bytes autograd saves per token in one decoder layer (no checkpointing), excluding attention scores."""
    norm_trains = method in ("full", "lora+", "lora+norm")
    kv = s.q_width if kernel == "eager" else s.kv_width  # eager repeats K/V heads for grouped-query attention
    saved = 2 * 4 * s.hidden + 2 * 4                       # two RMSNorms: fp32 input and rsqrt
    saved += 2 * a * s.hidden if norm_trains else 0         # normalised inputs, for the norm weights' grads
    saved += a * s.hidden                                   # attention input (q/k/v weights or LoRA A)
    saved += a * (s.q_width + 2 * kv)                       # q, k, v after RoPE (kernel inputs)
    saved += a * s.q_width  # attention output: o_proj's input (fused kernels return it (B, L, H, d) already,
    #                         so the kernel's saved output and o_proj's input are one tensor)
    saved += 4 * a * lora_r if method != "full" else 0      # LoRA A outputs
    saved += s.mlp_matrices * a * s.intermediate            # SiLU input, SiLU output, up output
    saved += a * (s.hidden + s.intermediate) if method == "full" else 0  # trained MLP inputs
    if kernel != "eager":
        saved += 4 * s.heads                                # log-sum-exp per head (fp32)
    return saved


def _attention_bytes_per_token_layer(s: Shape, context: int, key_length: int, a: int, kernel: str) -> int:
    """Score-matrix bytes per token in one layer: eager keeps softmax (fp32) and, below fp32, a cast copy."""
    if kernel != "eager":
        return 0
    return s.heads * key_length * (4 + (a if a != 4 else 0))


def estimate_memory(
    config,
    context: int,
    batch: int = 1,
    method: str = "lora+",
    attention: str = "s2",
    checkpointing: bool = True,
    precision: str = "mixed",
    kernel: str = "flash",
    lora_r: int = 8,
    group_size_ratio: float = 0.25,
    loss_chunk: int | None = None,
    zero_stage: int = 0,
    world_size: int = 1,
    device: str = "cuda",
) -> MemoryEstimate:
    """Predict the peak memory of one training micro-step, by component.

    ``loss_chunk`` (tokens) models a chunked cross-entropy (logits never materialised for the whole
    sequence); ``zero_stage``/``world_size`` model DeepSpeed ZeRO sharding across GPUs; ``device="cpu"``
    drops the CUDA runtime term.

    >>> from longlora_kit.architectures import architecture_config
    >>> est = estimate_memory(architecture_config("Llama-2-7B"), 8192, method="lora+", attention="s2")
    >>> est.total == sum(est.components.values())
    True
    >>> round(est.components["weights"] / 2**30, 1)  # 6.74e9 bf16 parameters + trainable copies
    12.8
    """
    _check_choice("method", method, METHODS)
    check_attention(attention)
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("kernel", kernel, KERNELS)
    _check_choice("zero_stage", zero_stage, (0, 1, 2, 3))
    _check_choice("device", device, ("cuda", "cpu"))
    for name, value in (("context", context), ("batch", batch), ("world_size", world_size), ("lora_r", lora_r)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0 < group_size_ratio <= 1:
        raise ValueError(f"group_size_ratio must be in (0, 1], got {group_size_ratio}")
    s = Shape.of(config)
    key_length = _s2_group_size(context, group_size_ratio) if attention != "full" else context
    w_bytes, g_bytes, o_bytes, a = _BYTES[precision]
    counts = parameter_counts(config, method, lora_r)
    weight_params = counts["total"] + counts["added"]
    shard_states = world_size if zero_stage >= 1 else 1
    shard_grads = world_size if zero_stage >= 2 else 1
    shard_weights = world_size if zero_stage >= 3 else 1

    tokens = batch * context
    per_layer = _activation_bytes_per_token_layer(s, method, a, lora_r, kernel)
    per_layer_attn = _attention_bytes_per_token_layer(s, context, key_length, a, kernel)
    final = tokens * (4 * s.hidden + (a * s.hidden if method == "full" else 0) + 2 * a * s.head_dim)
    if method in ("lora", "lora+norm"):  # frozen embeddings: layer 0's input needs no gradient, its first norm saves nothing
        final -= tokens * (4 * s.hidden + 4) * (0 if checkpointing else 1)
    backward_ws = tokens * a * (2 * s.intermediate + s.hidden)  # gradients flowing through one MLP
    # logits (a) -> fp32 copy (when a < 4) -> log_softmax output, its gradient, the logits' gradient (fp32)
    loss_tokens = min(tokens, loss_chunk) if loss_chunk else tokens
    logits = tokens * a * s.vocab if not loss_chunk else 0
    logits += loss_tokens * s.vocab * (3 * 4 + (4 if a != 4 else 0))
    if checkpointing:
        # kept: every layer's input. Phase 1, the loss: kept + logits. Phase 2, backward of one layer:
        # kept + that layer re-computed + its gradient buffers (the logits are gone by then).
        kept = tokens * s.layers * a * s.hidden + final
        at_loss = (kept, 0, logits)
        in_layer = (kept + tokens * per_layer + backward_ws, tokens * per_layer_attn, 0)
    else:
        kept = tokens * s.layers * per_layer + final
        attn_all = tokens * s.layers * per_layer_attn
        at_loss = (kept, attn_all, logits)
        in_layer = (kept + backward_ws, attn_all, 0)
    activations, attention_ws, logits = max(at_loss, in_layer, key=sum)

    components = {
        "weights": w_bytes * weight_params // shard_weights,
        "gradients": g_bytes * counts["trainable"] // shard_grads,
        "optimizer_states": o_bytes * counts["trainable"] // shard_states,
        "activations": activations,
        "attention_workspace": attention_ws,
        "logits_and_loss": logits,
        "runtime": CUDA_RUNTIME_BYTES if device == "cuda" else 0,
    }
    settings = dict(context=context, batch=batch, method=method, attention=attention,
                    checkpointing=checkpointing, precision=precision, kernel=kernel, lora_r=lora_r,
                    loss_chunk=loss_chunk, zero_stage=zero_stage, world_size=world_size, device=device)
    return MemoryEstimate(components, settings)


def max_context(config, gpu_gib: float, multiple_of: int = 1024, **settings) -> int:
    """The longest context (a multiple of ``multiple_of``) whose estimate fits in ``gpu_gib``; 0 if none.

    Memory grows monotonically with context (every token adds activations), so doubling finds a
    length that does not fit, and a binary search between the two is exact: there is no search cap
    that could be mistaken for the answer.

    >>> from longlora_kit.architectures import architecture_config
    >>> max_context(architecture_config("Llama-2-7B"), 80, loss_chunk=4096)
    141312
    """
    check_gpu_gib(gpu_gib)
    if settings.get("attention", "s2") == "s2":  # a valid multiple makes every multiple of it valid
        _s2_group_size(multiple_of, settings.get("group_size_ratio", 0.25), "multiple_of")

    def fits(n_units: int) -> bool:
        return estimate_memory(config, n_units * multiple_of, **settings).fits(gpu_gib)

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while fits(hi):  # invariant: lo fits, hi does not (once the loop ends)
        lo, hi = hi, 2 * hi
    hi -= 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo * multiple_of


# ---------------------------------------------------------------------------------------------- FLOPs

def attention_cost(length: int, group_size: float | None = None, heads: int = 8, head_dim: int = 64,
                   layers: int = 1, causal: bool = True, batch: int = 1) -> dict[str, float]:
    """Forward FLOPs and score-matrix bytes of attention over ``length`` tokens, full
    (``group_size=None``) or in groups of G tokens (S2-Attn: ``length / G`` groups of G x G).

    Each (query, key) pair costs ``2·d`` FLOPs in QKᵀ and ``2·d`` in AV, per head. ``causal=True``
    counts only the pairs a causal mask allows (G(G+1)/2 per group); ``causal=False`` the whole blocks,
    the paper's Table 11 convention. ``score_bytes_fp32`` is the dense fp32 score blocks of all layers.

    >>> full, s2 = attention_cost(8192), attention_cost(8192, 2048)
    >>> round(full["flops"] / s2["flops"], 3)  # L/G = 4, less the causal diagonals
    3.999
    >>> round(attention_cost(8192, heads=32, head_dim=128, layers=32, causal=False)["flops"] / 1e12, 1)
    35.2
    """
    group = length if group_size is None else group_size
    if not 0 < group <= length:
        raise ValueError(f"group_size={group_size} must lie in (0, length={length}]; S2-Attn uses length / 4")
    pairs = length / group * (group * (group + 1) / 2) if causal else length * group  # per head
    return {"flops": 4.0 * batch * pairs * (heads * head_dim) * layers,
            "score_bytes_fp32": 4.0 * batch * heads * layers * length * group}


def forward_flops(config, context: int, attention: str = "full", group_size_ratio: float = 0.25,
                  batch: int = 1) -> dict[str, float]:
    """Forward-pass FLOPs by part, the paper's Table 11 accounting (2 FLOPs per multiply-add).

    Keys: ``attention`` (:func:`attention_cost`, whole blocks), ``projections``, ``ffn``, ``others``
    (LM head + element-wise ops), ``total``.
    """
    check_attention(attention)
    s = Shape.of(config)
    n = batch * context
    group = context * group_size_ratio if attention != "full" else None
    attn = attention_cost(context, group, s.heads, s.head_dim, s.layers, causal=False, batch=batch)["flops"]
    proj = 2.0 * n * (2 * s.hidden * s.q_width + 2 * s.hidden * s.kv_width) * s.layers
    ffn = 2.0 * n * s.mlp_matrices * s.hidden * s.intermediate * s.layers
    # LM head + per layer: 2 RMSNorms (~4 ops/elt), RoPE on q,k (~3), residuals (2), SiLU·up (~5 per MLP elt)
    elementwise = n * s.layers * (8 * s.hidden + 3 * (s.q_width + s.kv_width) + 2 * s.hidden + 5 * s.intermediate)
    others = 2.0 * n * s.hidden * s.vocab + elementwise
    return {"attention": attn, "projections": proj, "ffn": ffn, "others": others,
            "total": attn + proj + ffn + others}


def step_flops(config, context: int, attention: str = "full", batch: int = 1, group_size_ratio: float = 0.25,
               method: str = "lora+", checkpointing: bool = True) -> dict[str, float]:
    """Model FLOPs (for MFU) and hardware FLOPs of one training step.

    ``model`` = 3 x forward (forward + a backward twice as costly), the usual MFU numerator.
    ``hardware`` adds the re-computed forward of gradient checkpointing and removes the weight-gradient
    matmuls that frozen layers (LoRA) skip: backward of a frozen linear layer computes only dX.
    """
    _check_choice("method", method, METHODS)
    fwd = forward_flops(config, context, attention, group_size_ratio, batch)
    model = 3.0 * fwd["total"]
    linear = fwd["projections"] + fwd["ffn"] + 2.0 * batch * context * Shape.of(config).hidden * config.vocab_size
    skipped = linear if method != "full" else 0.0
    hardware = model - skipped + (fwd["total"] if checkpointing else 0.0)
    return {"forward": fwd["total"], "model": model, "hardware": hardware}


def mfu(tokens_per_second: float, config, context: int, attention: str, peak_flops: float,
        group_size_ratio: float = 0.25) -> float:
    """Model FLOPs utilisation: achieved model FLOPs/s over the device's peak (e.g. 312e12 for A100 bf16)."""
    per_token = step_flops(config, context, attention, 1, group_size_ratio)["model"] / context
    return tokens_per_second * per_token / peak_flops


# ---------------------------------------------------------------------------------------------- moved

# ---------------------------------------------------------------------------------------------- paper

#: Table 12 (7B, 8xA100, FA2, ZeRO-2, gradient checkpointing): GB per GPU; None = OOM.
PAPER_TABLE12_GB = {
    "full": {8192: 46.3, 16384: 57.4, 32768: 68.8, 65536: None},
    "lora": {8192: 25.7, 16384: 34.7, 32768: 46.5, 65536: 71.1},
    "lora+ s2": {8192: 25.6, 16384: 34.6, 32768: 46.4, 65536: 69.8},
}
#: Table 12 hours for 1000 iterations.
PAPER_TABLE12_HOURS = {
    "full": {8192: 7.4, 16384: 16.3, 32768: 39.8, 65536: None},
    "lora": {8192: 6.0, 16384: 14.0, 32768: 36.5, 65536: 92.5},
    "lora+ s2": {8192: 5.2, 16384: 11.3, 32768: 24.6, 65536: 52.4},
}
#: Table 11 (Llama-2-7B forward TFLOPs): total with full attention, attention part, total with S2-Attn.
PAPER_TABLE11_TFLOPS = {
    8192: {"attention": 35.2, "total": 143.5, "total_s2": 117.1},
    16384: {"attention": 140.7, "total": None, "total_s2": 251.7},
    32768: {"attention": 562.9, "total": None, "total_s2": 573.8},
    65536: {"attention": 2251.8, "total": 3118.0, "total_s2": 1429.1},
}


def table12_comparison(config=None, contexts=(8192, 16384, 32768, 65536)) -> list[dict]:
    """Our Llama-2-7B estimates next to Table 12: per GPU under ZeRO-2 x 8 (the paper's set-up) and alone.

    Rows: ``setting`` (paper's row), ``context``, ``paper_gb``, ``zero2x8_gb``, ``one_gpu_gb``.
    """
    if config is None:
        from .architectures import architecture_config

        config = architecture_config("Llama-2-7B")
    rows = []
    setups = {"full": ("full", "full"), "lora": ("lora", "full"), "lora+ s2": ("lora+", "s2")}
    for name, (method, attention) in setups.items():
        for context in contexts:
            common = dict(method=method, attention=attention, precision="mixed", kernel="flash", checkpointing=True)
            sharded = estimate_memory(config, context, zero_stage=2, world_size=8, **common)
            alone = estimate_memory(config, context, **common)
            rows.append({"setting": name, "context": context, "paper_gb": PAPER_TABLE12_GB[name][context],
                         "zero2x8_gb": round(sharded.total / 1e9, 1), "one_gpu_gb": round(alone.total / 1e9, 1)})
    return rows


def _to_gb(nbytes: int) -> float:
    return nbytes / 1e9
