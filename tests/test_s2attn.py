"""S2-Attn backends against the dense-mask reference; transformers integration; bad input."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import longlora_kit  # noqa: F401  (registers "s2_attn" / "s2_attn_paper")
from longlora_kit import build_model, tiny_config
from longlora_kit import patterns as P
from longlora_kit import s2attn as S
from longlora_kit.utils import flash_attn_available

TOL = 1e-5
B, H, L, D, G = 2, 4, 32, 8, 8
ALL_PATTERNS = ("s2", "pattern1", "pattern2", "dilated", "block_sparse", "stride_sparse")


def qkv(heads=H, kv_heads=H, length=L, layout="bhld", grad=True, dtype=torch.float32):
    """Random q, k, v; layout "blhd" mimics transformers (transposes of (B, L, H, D) memory)."""
    out = []
    for h in (heads, kv_heads, kv_heads):
        x = torch.randn(B, length, h, D, dtype=dtype).transpose(1, 2) if layout == "blhd" else torch.randn(
            B, h, length, D, dtype=dtype
        )
        out.append(x.detach().requires_grad_(grad))
    return out


def reference(q, k, v, pattern, variant, group=G, attention_mask=None):
    mask = P.dense_mask(P.pattern_mask(pattern, group, q.shape[1], q.shape[2], variant), q.shape[1], q.shape[2])
    if attention_mask is not None:
        mask = mask & attention_mask
    return S.reference_attention(q, k, v, mask)


def grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad(out, inputs, g)


def max_diffs(got, want, inputs):
    forward = (got - want).abs().max().item()
    backward = max((a - b).abs().max().item() for a, b in zip(grads(got, inputs), grads(want, inputs)))
    return forward, backward


@pytest.mark.parametrize("layout", ["bhld", "blhd"])
@pytest.mark.parametrize("kv_heads", [H, H // 2])
@pytest.mark.parametrize("variant", S.VARIANTS)
@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_sdpa_backend_equals_dense_reference(pattern, variant, kv_heads, layout):
    q, k, v = qkv(kv_heads=kv_heads, layout=layout)
    got = S.s2_attention(q, k, v, G, variant, "sdpa", pattern=pattern)
    assert got.shape == (B, H, L, D)
    forward, backward = max_diffs(got, reference(q, k, v, pattern, variant), (q, k, v))
    assert forward <= TOL and backward <= TOL, (forward, backward)


@pytest.mark.parametrize("kv_heads", [H, H // 2])
@pytest.mark.parametrize("variant", S.VARIANTS)
@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_flex_backend_forward_equals_dense_reference(pattern, variant, kv_heads):
    q, k, v = qkv(kv_heads=kv_heads, grad=False)
    got = S.s2_attention(q, k, v, G, variant, "flex", pattern=pattern)
    assert (got - reference(q, k, v, pattern, variant)).abs().max().item() <= TOL


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour: FlexAttention has no CPU backward")
def test_flex_backend_on_cpu_with_grad_warns_once_and_falls_back_to_sdpa():
    q, k, v = qkv()
    S._warn_flex_cpu_backward.cache_clear()
    with pytest.warns(UserWarning, match="no backward pass on CPU"):
        got = S.s2_attention(q, k, v, G, "leak_free", "flex")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        S.s2_attention(q, k, v, G, "leak_free", "flex")
    forward, backward = max_diffs(got, reference(q, k, v, "s2", "leak_free"), (q, k, v))
    assert forward <= TOL and backward <= TOL


@pytest.mark.skipif(not flash_attn_available(), reason="flash-attn is not installed or there is no CUDA GPU")
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_flash_backend_equals_dense_reference(variant):
    q, k, v = (x.detach().cuda().to(torch.bfloat16).requires_grad_() for x in qkv(kv_heads=H // 2))
    got = S.s2_attention(q, k, v, G, variant, "flash")
    want = reference(q.float(), k.float(), v.float(), "s2", variant).to(torch.bfloat16)
    assert (got.float() - want.float()).abs().max().item() <= 2e-2  # bf16 kernel: bf16 tolerance


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_one_group_without_shift_is_full_attention(backend):
    q, k, v = qkv(grad=False)
    got = S.s2_attention(q, k, v, L, "leak_free", backend, pattern="pattern1")
    assert (got - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max().item() <= TOL


def test_leak_free_is_causal_and_paper_is_not():
    q, k, v = qkv(grad=False)
    for variant, leaks in (("leak_free", False), ("paper", True)):
        before = S.s2_attention(q, k, v, G, variant)
        k2, v2 = k.clone(), v.clone()
        k2[:, :, -1] += 1.0  # change only the last token's key and value
        v2[:, :, -1] += 1.0
        after = S.s2_attention(q, k2, v2, G, variant)
        earlier_changed = (after[:, :, :-1] - before[:, :, :-1]).abs().max().item() > 1e-4
        assert earlier_changed == leaks, variant
        if leaks:  # exactly the wrapped first G/2 tokens of the shifted heads see the last token
            changed = (after - before).abs().amax(dim=(0, 3)) > 1e-4  # (H, L)
            assert changed[H // 2 :, : G // 2].all() and not changed[: H // 2, :-1].any()


def test_scaling_is_passed_through():
    q, k, v = qkv(grad=False)
    mask = P.dense_mask(P.s2(G, H, L), H, L)
    got = S.s2_attention(q, k, v, G, scaling=0.1)
    assert (got - S.reference_attention(q, k, v, mask, scaling=0.1)).abs().max().item() <= TOL


def test_padding_mask_is_combined_with_the_pattern():
    q, k, v = qkv()
    allowed = torch.ones(B, 1, L, L, dtype=torch.bool)
    allowed[1, :, :, :5] = False  # batch row 1 is left-padded by 5 tokens
    got = S.s2_attention(q, k, v, G, attention_mask=allowed)
    want = reference(q, k, v, "s2", "leak_free", attention_mask=allowed)
    real = torch.ones(B, 1, L, 1, dtype=torch.bool)
    real[1, :, :5] = False
    assert torch.isfinite(got).all()
    assert torch.where(real, got - want, 0.0).abs().max().item() <= TOL  # padding rows' outputs are unused
    q_grad = torch.autograd.grad((got * real).sum(), q)[0]
    assert torch.isfinite(q_grad).all()


def test_bad_input_gives_clear_errors():
    q, k, v = qkv(grad=False)
    with pytest.raises(ValueError, match=r"L=32 is not a multiple of group_size=12; use L=24 or L=36"):
        S.s2_attention(q, k, v, 12)
    with pytest.raises(ValueError, match=r"group_size=5 is odd"):
        S.s2_attention(*qkv(length=30, grad=False), 5)
    with pytest.raises(ValueError, match=r"group_size=64 must be between 1 and the sequence length L=32"):
        S.s2_attention(q, k, v, 64)
    with pytest.raises(ValueError, match=r"num_heads=3 is odd"):
        S.s2_attention(*qkv(heads=3, kv_heads=3, grad=False), G)
    with pytest.raises(ValueError, match=r"num_kv_heads=1 is odd"):
        S.s2_attention(*qkv(kv_heads=1, grad=False), G)
    with pytest.raises(ValueError, match=r"backend='cuda' is unknown"):
        S.s2_attention(q, k, v, G, backend="cuda")
    with pytest.raises(ValueError, match=r"L=100 with group_size_ratio=0.25 gives G=25.*use L=96 or L=104"):
        S.group_size_for(100, 0.25)
    with pytest.raises(ValueError, match=r"group_size_ratio=1.5"):
        S.group_size_for(100, 1.5)
    with pytest.raises(ValueError, match=r"needs keys for exactly the query tokens"):
        S.s2_attention(q[:, :, :8], k, v, G)


def test_attention_cost_falls_by_about_L_over_G():
    full, s2 = S.attention_cost(8192), S.attention_cost(8192, 2048)
    assert 3.9 < full["flops"] / s2["flops"] < 4.0
    assert full["score_bytes_fp32"] / s2["score_bytes_fp32"] == 4


# ----------------------------------------------------------------------------------------------
# transformers integration


def tiny(impl, **overrides):
    config = tiny_config(num_hidden_layers=2, **overrides)
    config._attn_implementation = impl
    return build_model(config, seed=0)


def test_registered_with_both_interfaces():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    for name in ("s2_attn", "s2_attn_paper"):
        assert name in AttentionInterface._global_mapping and name in AttentionMaskInterface._global_mapping


def test_eval_mode_equals_sdpa_and_train_mode_is_s2():
    ids = torch.randint(0, 512, (2, 64))  # L=64: groups of G=16
    sdpa, s2 = tiny("sdpa").eval(), tiny("s2_attn").eval()
    with torch.no_grad():
        full = sdpa(ids).logits
        assert (s2(ids).logits - full).abs().max().item() == 0.0  # eval mode: plain SDPA
        train_logits = s2.train()(ids).logits
    assert (train_logits - full).abs().max().item() > 1e-3  # train mode: really sparse
    # tokens 0..G/2-1 see all their past in both halves of the heads (leak-free), in every layer
    assert (train_logits[:, :8] - full[:, :8]).abs().max().item() <= 1e-5


def test_model_in_train_mode_equals_dense_reference_attention():
    """The whole model with s2_attn equals the same model with the dense S2 mask fed as a 4-D mask."""
    ids = torch.randint(0, 512, (1, 32))
    s2 = tiny("s2_attn_paper", num_key_value_heads=2).train()
    eager = tiny("eager", num_key_value_heads=2).train()
    allowed = P.dense_mask(P.s2(8, 4, 32, "paper"), 4, 32)[None]  # (1, H, L, L)
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    with torch.no_grad():
        got, want = s2(ids).logits, eager(ids, attention_mask=additive).logits
    assert (got - want).abs().max().item() <= 1e-4


def test_ablation_config_and_sparse_eval():
    ids = torch.randint(0, 512, (1, 32))
    base = tiny("sdpa").eval()
    model = tiny("s2_attn", attention_pattern="pattern1").eval()
    with torch.no_grad():
        assert (model(ids).logits - base(ids).logits).abs().max().item() == 0.0  # eval: full attention
        model.config.sparse_attention_in_eval = True
        sparse = model(ids).logits
        model.config.attention_pattern = "stride_sparse"
        assert (model(ids).logits - sparse).abs().max().item() > 1e-3
        model.config.attention_pattern = "s2_layers"
        model(ids)
        model.config.attention_pattern = "diagonal"
        with pytest.raises(ValueError, match="attention_pattern='diagonal'"):
            model(ids)


def test_padded_batch_gives_same_result_as_unpadded_rows():
    """Right padding: the real tokens of a padded row match the same row run alone (both S2, train mode)."""
    model = tiny("s2_attn").train()
    ids = torch.randint(1, 512, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 24:] = 0  # row 1 has 24 real tokens, then padding
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        alone = model(ids[:1]).logits
    assert (batched[0] - alone[0]).abs().max().item() <= 1e-5
    # the padded row's real tokens must not see the padding: change the padding, nothing real changes
    ids2 = ids.clone()
    ids2[1, 24:] = 7
    with torch.no_grad():
        again = model(ids2, attention_mask=mask).logits
    assert (again[1, :24] - batched[1, :24]).abs().max().item() <= 1e-5


def test_tiny_llama_trains_with_s2_attn_and_loss_falls():
    torch.manual_seed(0)
    model = tiny("s2_attn").train()
    ids = torch.randint(0, 64, (4, 64))  # small vocabulary so a few steps can learn its statistics
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses
    assert all(torch.isfinite(p.grad if p.grad is not None else torch.zeros(1)).all() for p in model.parameters())


def _varlen_reference_kernel(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None, causal=True):
    """flash-attn's varlen contract on CPU: causal attention inside each [cu[i], cu[i+1]) segment."""
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32 and causal and dropout_p == 0.0
    assert max_q == int((cu_q[1:] - cu_q[:-1]).max())
    out = torch.empty_like(q)
    for start, end in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        seg = [x[start:end].transpose(0, 1) for x in (q, k, v)]  # (1, len, D)
        out[start:end] = F.scaled_dot_product_attention(*seg, is_causal=True, scale=softmax_scale).transpose(0, 1)
    return out


@pytest.mark.parametrize("variant", S.VARIANTS)
def test_flash_packing_with_a_cpu_varlen_kernel(variant):
    """The flash backend's packing and cu_seqlens, checked on CPU with a reference varlen kernel."""
    q, k, v = qkv(kv_heads=H // 2, layout="blhd")
    got = S._varlen_grouped(q, k, v, G, variant, "s2", None, 0.0, _varlen_reference_kernel)
    forward, backward = max_diffs(got, reference(q, k, v, "s2", variant), (q, k, v))
    assert forward <= TOL and backward <= TOL, (forward, backward)


def test_flash_backend_refuses_cpu_fp32_clearly():
    with pytest.raises(ValueError, match="backend='flash' needs fp16/bf16 tensors on a CUDA GPU"):
        S.s2_attention(*qkv(grad=False), G, backend="flash")
