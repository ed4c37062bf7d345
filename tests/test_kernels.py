"""Every fast backend equals the readable S2-Attn (``s2attn.shifted_sparse_attention``): forward and
backward, both variants, GQA, odd head counts, kv heads shared by both halves."""

import pytest
import torch
import torch.nn.functional as F

from longlora_kit import s2attn as S
from longlora_kit.kernels import flash, flex, rows
from longlora_kit.patterns import Grouping
from longlora_kit.utils import flash_attn_available

TOL = 1e-5
B, L, D, G = 2, 32, 8, 8
# (query heads, key/value heads): MHA, GQA, SmolLM2-135M 9/3, SmolLM2-360M 15/5, Gemma-2B 8/1, odd MHA
HEAD_LAYOUTS = [(4, 4), (4, 2), (9, 3), (15, 5), (8, 1), (3, 3)]
ON_CPU = not torch.cuda.is_available()


def qkv(heads, kv_heads, layout="bhld", grad=True, device="cpu", dtype=torch.float32):
    """Random q, k, v; layout "blhd" mimics transformers (transposes of (B, L, H, D) memory)."""
    g = torch.Generator().manual_seed(heads * 100 + kv_heads)
    out = []
    for h in (heads, kv_heads, kv_heads):
        x = torch.randn(B, L, h, D, generator=g).transpose(1, 2) if layout == "blhd" else torch.randn(B, h, L, D, generator=g)
        out.append(x.to(device, dtype).detach().requires_grad_(grad))
    return out


def forward_and_grads(out, inputs):
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device, out.dtype)
    return [out, *torch.autograd.grad(out, inputs, grad_out)]


def assert_equal_to_reference(got_fn, q, k, v, variant, pattern="s2", tol=TOL, grad=True):
    want = S.shifted_sparse_attention(q.float(), k.float(), v.float(), G, variant, pattern=pattern)
    got = got_fn(q, k, v)
    assert got.shape == want.shape == q.shape
    if not grad:
        diff = (got.float() - want).abs().max().item()
        assert diff <= tol, diff
        return
    expected = forward_and_grads(want, (q, k, v))
    for name, a, b in zip(("out", "dq", "dk", "dv"), forward_and_grads(got, (q, k, v)), expected):
        diff = (a.float() - b.float()).abs().max().item()
        assert diff <= tol, (name, diff)


@pytest.mark.parametrize("layout", ["bhld", "blhd"])
@pytest.mark.parametrize("heads", HEAD_LAYOUTS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_rows_backend_equals_reference(variant, heads, layout):
    q, k, v = qkv(*heads, layout=layout)
    assert_equal_to_reference(lambda q, k, v: rows.attention(q, k, v, Grouping(G, variant)), q, k, v, variant)


@pytest.mark.parametrize("pattern", ["pattern1", "pattern2"])
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_rows_backend_equals_reference_for_the_one_pattern_ablations(variant, pattern):
    q, k, v = qkv(9, 3)
    assert_equal_to_reference(lambda q, k, v: rows.attention(q, k, v, Grouping(G, variant, pattern)),
                              q, k, v, variant, pattern)


def _varlen_reference_kernel(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None, causal=True):
    """flash-attn's varlen contract on CPU: causal attention inside each [cu[i], cu[i+1]) segment."""
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32 and causal and dropout_p == 0.0
    assert max_q == int((cu_q[1:] - cu_q[:-1]).max())
    out = torch.empty_like(q)
    for start, end in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        seg = [x[start:end].transpose(0, 1) for x in (q, k, v)]  # (1, len, D)
        out[start:end] = F.scaled_dot_product_attention(*seg, is_causal=True, scale=softmax_scale).transpose(0, 1)
    return out


@pytest.mark.parametrize("heads", HEAD_LAYOUTS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_flash_packing_equals_reference_with_a_cpu_varlen_kernel(variant, heads):
    """The flash backend's packing and cu_seqlens, on CPU with a plain varlen kernel standing in."""
    q, k, v = qkv(*heads, layout="blhd")
    assert_equal_to_reference(
        lambda q, k, v: flash.varlen_attention(q, k, v, Grouping(G, variant), _varlen_reference_kernel), q, k, v, variant
    )


@pytest.mark.skipif(not flash_attn_available(), reason="flash-attn needs its package and a CUDA GPU (not here)")
@pytest.mark.parametrize("heads", HEAD_LAYOUTS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_flash_backend_equals_reference(variant, heads):
    q, k, v = qkv(*heads, layout="blhd", device="cuda", dtype=torch.bfloat16)
    assert_equal_to_reference(lambda q, k, v: S.s2_attention(q, k, v, G, variant, "flash"), q, k, v, variant, tol=3e-2)


@pytest.mark.parametrize("heads", HEAD_LAYOUTS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_flex_backend_forward_equals_reference(variant, heads):
    q, k, v = qkv(*heads, grad=False)
    assert_equal_to_reference(lambda q, k, v: flex.attention(q, k, v, Grouping(G, variant)), q, k, v, variant, grad=False)


@pytest.mark.skipif(ON_CPU, reason="FlexAttention has no CPU backward (torch raises NotImplementedError)")
@pytest.mark.parametrize("heads", HEAD_LAYOUTS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("variant", S.VARIANTS)
def test_flex_backend_backward_equals_reference(variant, heads):
    q, k, v = qkv(*heads, device="cuda")
    assert_equal_to_reference(lambda q, k, v: flex.attention(q, k, v, Grouping(G, variant)), q, k, v, variant, tol=1e-4)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_s2_attention_dispatches_to_each_backend(backend):
    """The entry point with each backend equals the reference (flash: only where it can run)."""
    if backend == "flash" and not flash_attn_available():
        with pytest.raises(ValueError, match="backend='flash' needs fp16/bf16 tensors on a CUDA GPU"):
            S.s2_attention(*qkv(9, 3, grad=False), G, backend="flash")
        return
    q, k, v = qkv(9, 3, grad=False)
    got = S.s2_attention(q, k, v, G, "paper", backend)
    assert (got - S.shifted_sparse_attention(q, k, v, G, "paper")).abs().max().item() <= TOL


def test_rows_plan_is_a_permutation_of_every_head_and_token():
    """Each (head, token) is in exactly one group, whatever the head count (the gather is a permutation)."""
    for variant in S.VARIANTS:
        seen = torch.zeros(9, L, dtype=torch.long)
        for heads, positions in rows.plan(Grouping(G, variant), L, 9).values():
            seen.index_put_((heads[:, None].expand_as(positions), positions), torch.ones_like(positions), accumulate=True)
        assert torch.equal(seen, torch.ones(9, L, dtype=torch.long)), variant
