"""The readable S2-Attn against the dense-mask definition; the entry point; transformers integration;
bad input. (The fast backends against the readable one: tests/test_kernels.py.)"""

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from longlora_kit import build_model, tiny_config
from longlora_kit import patterns as P
from longlora_kit import s2attn as S
from longlora_kit.architectures import KNOWN_ARCHITECTURES

TOL = 1e-5
B, H, L, D, G = 2, 4, 32, 8, 8
ALL_PATTERNS = ("s2", "pattern1", "pattern2", "dilated", "block_sparse", "stride_sparse")
HEAD_LAYOUTS = [(4, 4), (4, 2), (9, 3), (15, 5), (8, 1), (3, 3), (1, 1)]  # (query heads, kv heads)


@pytest.fixture(scope="module", autouse=True)
def _registered():
    S.register()  # explicit: importing longlora_kit registers nothing


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


@pytest.mark.parametrize("heads", HEAD_LAYOUTS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("variant", S.VARIANTS)
@pytest.mark.parametrize("pattern", ["s2", "pattern1", "pattern2"])
def test_readable_s2_equals_the_dense_mask_definition(pattern, variant, heads):
    """roll / reshape / SDPA / roll back == softmax attention under patterns.py's mask: any head layout."""
    q, k, v = qkv(*heads)
    got = S.shifted_sparse_attention(q, k, v, G, variant, pattern=pattern)
    assert got.shape == (B, heads[0], L, D)
    forward, backward = max_diffs(got, reference(q, k, v, pattern, variant), (q, k, v))
    assert forward <= TOL and backward <= TOL, (forward, backward)


def test_odd_head_count_shifts_the_larger_half():
    """9 heads: heads 0-3 aligned, 4-8 shifted (the official code's qkv[:, H//2:]), 3 kv heads shared."""
    q, k, v = qkv(9, 3, grad=False)
    got = S.shifted_sparse_attention(q, k, v, G, "leak_free")
    kk, vv = k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)
    for head in range(9):
        one = [x[:, head : head + 1] for x in (q, kk, vv)]
        alone = S.shifted_sparse_attention(*one, G, pattern="pattern2" if head >= 4 else "pattern1")
        assert (got[:, head : head + 1] - alone).abs().max().item() <= TOL, head


@pytest.mark.parametrize("layout", ["bhld", "blhd"])
@pytest.mark.parametrize("kv_heads", [H, H // 2])
@pytest.mark.parametrize("variant", S.VARIANTS)
@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_entry_point_equals_dense_definition_for_every_pattern(pattern, variant, kv_heads, layout):
    q, k, v = qkv(kv_heads=kv_heads, layout=layout)
    got = S.s2_attention(q, k, v, G, variant, "sdpa", pattern=pattern)
    assert got.shape == (B, H, L, D)
    forward, backward = max_diffs(got, reference(q, k, v, pattern, variant), (q, k, v))
    assert forward <= TOL and backward <= TOL, (forward, backward)


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


@pytest.mark.parametrize("backend", ["sdpa", "flex", "reference"])
def test_one_group_without_shift_is_full_attention(backend):
    q, k, v = qkv(grad=False)
    got = S.s2_attention(q, k, v, L, "leak_free", backend, pattern="pattern1")
    assert (got - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max().item() <= TOL


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_leak_free_is_causal_and_paper_is_not(backend):
    q, k, v = qkv(grad=False)
    for variant, leaks in (("leak_free", False), ("paper", True)):
        before = S.s2_attention(q, k, v, G, variant, backend)
        k2, v2 = k.clone(), v.clone()
        k2[:, :, -1] += 1.0  # change only the last token's key and value
        v2[:, :, -1] += 1.0
        after = S.s2_attention(q, k2, v2, G, variant, backend)
        earlier_changed = (after[:, :, :-1] - before[:, :, :-1]).abs().max().item() > 1e-4
        assert earlier_changed == leaks, variant
        if leaks:  # exactly the wrapped first G/2 tokens of the shifted heads see the last token
            changed = (after - before).abs().amax(dim=(0, 3)) > 1e-4  # (H, L)
            assert changed[H // 2 :, : G // 2].all() and not changed[: H // 2, :-1].any()


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_scaling_is_passed_through(backend):
    q, k, v = qkv(grad=False)
    mask = P.dense_mask(P.s2(G, H, L), H, L)
    got = S.s2_attention(q, k, v, G, backend=backend, scaling=0.1)
    assert (got - S.reference_attention(q, k, v, mask, scaling=0.1)).abs().max().item() <= TOL


@pytest.mark.parametrize("mask_shape", ["full", "key_padding"])
def test_padding_mask_is_combined_with_the_pattern(mask_shape):
    q, k, v = qkv()
    real_keys = torch.ones(B, 1, 1, L, dtype=torch.bool)
    real_keys[1, ..., :5] = False  # batch row 1 is left-padded by 5 tokens
    allowed = real_keys.expand(B, 1, L, L).clone() if mask_shape == "full" else real_keys
    got = S.s2_attention(q, k, v, G, attention_mask=allowed)
    want = reference(q, k, v, "s2", "leak_free", attention_mask=allowed)
    real = real_keys.transpose(-1, -2)  # (B, 1, L, 1): the real query rows
    assert torch.isfinite(got).all()
    assert torch.where(real, got - want, 0.0).abs().max().item() <= TOL  # padding rows' outputs are unused
    q_grad = torch.autograd.grad((got * real).sum(), q)[0]
    assert torch.isfinite(q_grad).all()


def test_bad_input_gives_clear_errors():
    q, k, v = qkv(grad=False)
    with pytest.raises(ValueError, match=r"L=32 is not a multiple of group_size=12; use L=24 or L=36"):
        S.s2_attention(q, k, v, 12)
    with pytest.raises(ValueError, match=r"group_size=5 is odd, but the shift is G/2; use G=2 or G=6 \(even, dividing L=30\)"):
        S.s2_attention(*qkv(length=30, grad=False), 5)
    with pytest.raises(ValueError, match=r"group_size=64 must be between 1 and the sequence length L=32"):
        S.s2_attention(q, k, v, 64)
    with pytest.raises(ValueError, match=r"num_heads=4 is not a multiple of num_kv_heads=3"):
        S.s2_attention(q, *qkv(kv_heads=3, grad=False)[1:], G)
    with pytest.raises(ValueError, match=r"backend='cuda' is unknown"):
        S.s2_attention(q, k, v, G, backend="cuda")
    with pytest.raises(ValueError, match=r"variant='shifted' is not an S2-Attn variant"):
        S.s2_attention(q, k, v, G, "shifted")
    with pytest.raises(ValueError, match=r"needs keys for exactly the query tokens.*model\.eval\(\)"):
        S.s2_attention(q[:, :, :8], k, v, G)


def test_mismatched_tensors_name_the_problem_and_the_fix():
    q, k, v = qkv(grad=False)
    with pytest.raises(ValueError, match=r"head_dim differs: q has D=8, k 4, v 8"):
        S.s2_attention(q, k[..., :4], v, G)
    with pytest.raises(ValueError, match=r"must have the same heads and length \(one value per key\)"):
        S.s2_attention(q, k, v[:, :, :16], G)
    with pytest.raises(ValueError, match=r"batch sizes differ: q has B=2, k 1"):
        S.s2_attention(q, k[:1], v, G)
    with pytest.raises(ValueError, match=r"must be floating point, got torch.int64.*use \.float\(\)"):
        S.s2_attention(q.long(), k.long(), v.long(), G)
    with pytest.raises(ValueError, match=r"must share one dtype"):
        S.s2_attention(q, k.double(), v, G)
    with pytest.raises(ValueError, match=r"q, k, v must be \(B, H, L, D\)"):
        S.s2_attention(q[0], k[0], v[0], G)
    with pytest.raises(ValueError, match=r"attention_mask must be a bool mask .* \(2, 1, 32, 32\) .*got torch.bool \(2, 32\)"):
        S.s2_attention(q, k, v, G, attention_mask=torch.ones(B, L, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attention_mask must be a bool mask .*got torch.float32"):
        S.s2_attention(q, k, v, G, attention_mask=torch.zeros(B, 1, L, L))


def test_fix_suggestions_are_lengths_and_sizes_that_work():
    """Issue 15: L=1 suggested "G=0 or G=2"; G=4.5 suggested "L=13.5". Every suggestion must be accepted."""
    with pytest.raises(ValueError, match=r"no even G divides L=1; use an even sequence length") as err:
        S.check_shapes(1, 1, 4, 4)
    assert "G=0" not in str(err.value)
    with pytest.raises(ValueError, match=r"group_size=4.5 must be a whole number of tokens") as err:
        S.check_shapes(16, 4.5, 4, 4)
    assert "13.5" not in str(err.value)
    with pytest.raises(ValueError, match=r"L=1 with group_size_ratio=0.25 gives G=0.25.*use L=8 \(a multiple of 8\)"):
        S.group_size_for(1)
    with pytest.raises(ValueError, match=r"L=100 with group_size_ratio=0.25 gives G=25.*use L=96 or L=104"):
        S.group_size_for(100, 0.25)
    assert S.group_size_for(96) == 24 and S.group_size_for(104) == 26  # the suggested lengths work
    with pytest.raises(ValueError, match=r"L=8191 .*use L=8184 or L=8192"):
        S.group_size_for(8191)
    with pytest.raises(ValueError, match=r"group_size_ratio=0.3 gives L/G = 3.33333 groups, not a whole number; use group_size_ratio=1/3"):
        S.group_size_for(96, 0.3)
    assert S.group_size_for(96, 1 / 3) == 32
    for ratio in (1.5, 0.0, float("nan")):
        with pytest.raises(ValueError, match=r"group_size_ratio=.* must be in \(0, 1\]"):
            S.group_size_for(100, ratio)


def tiny(impl, **overrides):
    config = tiny_config(num_hidden_layers=2, **overrides)
    config._attn_implementation = impl
    return build_model(config, seed=0)


def test_registered_with_both_interfaces_and_register_is_idempotent():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    before = {name: AttentionInterface._global_mapping[name] for name in S.IMPLEMENTATIONS}
    S.register()
    for name in ("s2_attn", "s2_attn_paper"):
        assert name in AttentionMaskInterface._global_mapping
        assert AttentionInterface._global_mapping[name] is before[name]  # the same function, not a new one


def test_importing_the_package_registers_nothing():
    code = ("import longlora_kit; from transformers import AttentionInterface; "
            "print('s2_attn' in AttentionInterface._global_mapping)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_paper_variant_padded_batch_keeps_unpadded_rows_unchanged():
    """Issue 15 #9: padding row 1 must not change row 0 (transformers' causal mask hid the wrap-around)."""
    model = tiny("s2_attn_paper").train()
    ids = torch.randint(1, 512, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 24:] = 0
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        alone = model(ids[:1]).logits
    assert (batched[0] - alone[0]).abs().max().item() <= 1e-5


def test_train_mode_length_error_says_to_call_eval():
    """Issue 15: generate() in train mode failed on a group-size error with no hint."""
    model = tiny("s2_attn").train()
    with pytest.raises(ValueError, match=r"L=30 .*use L=24 or L=32.*call model\.eval\(\) first"):
        model(torch.randint(0, 512, (1, 30)))
    with pytest.raises(ValueError, match=r"call model\.eval\(\) first"):
        model.generate(torch.randint(0, 512, (1, 7)), max_new_tokens=2, do_sample=False)
    model.eval()
    out = model.generate(torch.randint(0, 512, (1, 7)), max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 9)
    model.config.sparse_attention_in_eval = True  # S2 in eval mode too: the hint names that setting
    with pytest.raises(ValueError, match=r"sparse_attention_in_eval=True runs S2-Attn in eval mode too"), torch.no_grad():
        model(torch.randint(0, 512, (1, 30)))


# One S2 training step for every head layout the kit's presets use (issue 16 #2), tiny widths.
PRESET_HEADS = sorted({(4, 4)} | {(a["num_attention_heads"], a.get("num_key_value_heads", a["num_attention_heads"]))
                                  for a in KNOWN_ARCHITECTURES.values()})


def test_preset_head_layouts_include_the_issue_shapes():
    assert {(4, 4), (9, 3), (32, 4), (32, 32)} <= set(PRESET_HEADS)


@pytest.mark.parametrize("variant", S.VARIANTS)
@pytest.mark.parametrize("heads", PRESET_HEADS, ids=lambda h: f"{h[0]}q{h[1]}kv")
def test_one_s2_training_step_equals_the_dense_mask_reference(heads, variant):
    num_heads, kv_heads = heads
    shape = dict(hidden_size=4 * num_heads, intermediate_size=64, vocab_size=128,
                 num_attention_heads=num_heads, num_key_value_heads=kv_heads)
    impl = {v: k for k, v in S.IMPLEMENTATIONS.items()}[variant]
    s2, eager = tiny(impl, **shape).train(), tiny("eager", **shape).train()
    ids = torch.randint(0, 128, (2, 32))  # L=32: G=8
    allowed = P.dense_mask(P.s2(8, num_heads, 32, variant), num_heads, 32)[None]  # (1, H, L, L)
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    loss = s2(ids, labels=ids).loss
    want = eager(ids, labels=ids, attention_mask=additive).loss
    loss.backward()
    want.backward()
    assert torch.isfinite(loss) and abs(loss.item() - want.item()) <= 1e-5
    for (name, a), b in zip(s2.named_parameters(), eager.parameters()):
        assert (a.grad - b.grad).abs().max().item() <= 1e-5, name


def test_right_padded_leak_free_batches_take_the_fast_path_and_equal_the_dense_mask(monkeypatch):
    """A right-padded key mask changes no real token's output under leak-free S2, so it is dropped (no O(L^2)
    mask); left padding, holes and the paper's wrap-around keep the dense-mask path."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 32, 8) for _ in range(3))  # (B, H, L, D)
    lengths = [13, 32, 5]
    real = torch.tensor([[1] * n + [0] * (32 - n) for n in lengths], dtype=torch.bool)  # (B, L)
    key_mask = real[:, None, None, :]  # (B, 1, 1, L)
    dense = S.masked_attention(q, k, v, P.dense_mask(P.pattern_mask("s2", 8, 4, 32, "leak_free"), 4, 32) & key_mask)
    calls = []
    monkeypatch.setattr(S, "masked_attention", lambda *a, **kw: calls.append(1) or dense)
    fast = S.s2_attention(q, k, v, 8, "leak_free", attention_mask=key_mask)
    assert calls == []  # no dense mask was built
    for row, n in enumerate(lengths):
        torch.testing.assert_close(fast[row, :, :n], dense[row, :, :n], atol=1e-5, rtol=1e-5)
    for mask, variant in [(real.flip(-1)[:, None, None, :], "leak_free"),                       # left padding
                          (torch.tensor([[1] * 10 + [0] * 2 + [1] * 20] * 3, dtype=torch.bool)[:, None, None, :],
                           "leak_free"),                                                              # a hole
                          (key_mask, "paper")]:                                                       # wrap-around
        S.s2_attention(q, k, v, 8, variant, attention_mask=mask)
    assert len(calls) == 3
