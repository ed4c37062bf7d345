"""Attention patterns: the mask functions against brute-force Python loops and the paper's examples."""

import pytest
import torch

from longlora_kit import patterns as P

L, G, H = 16, 4, 4
S = G // 2


def brute(pattern, variant="leak_free", length=L, group=G, heads=H):
    """The patterns written as plain loops over explicit group lists (independent of the mask functions)."""
    half = group // 2
    aligned = [list(range(i, i + group)) for i in range(0, length, group)]
    if variant == "leak_free":
        shifted = [list(range(half))] + [list(range(i, i + group)) for i in range(half, length - half, group)]
        shifted += [list(range(length - half, length))]
    else:  # roll by -G/2: rolled position r holds token (r + G/2) mod L
        shifted = [[(r + half) % length for r in range(i, i + group)] for i in range(0, length, group)]
    m = torch.zeros(heads, length, length, dtype=torch.bool)
    for h in range(heads):
        if pattern in ("pattern1", "pattern2", "s2"):
            use_shift = pattern == "pattern2" or (pattern == "s2" and h >= heads // 2)
            for grp in shifted if use_shift else aligned:
                for i, q in enumerate(grp):
                    for k in grp[: i + 1]:  # causal in the group's (rolled) order
                        m[h, q, k] = True
        for q in range(length):
            for k in range(q + 1):
                if pattern == "full":
                    m[h, q, k] = True
                elif pattern == "dilated":
                    m[h, q, k] = q // (2 * group) == k // (2 * group) and q % 2 == k % 2
                elif pattern == "block_sparse":
                    if h < heads // 2 or q < group:
                        m[h, q, k] = q // group == k // group
                    else:
                        m[h, q, k] = k // group == q // group - 1
                elif pattern == "stride_sparse":
                    m[h, q, k] = q - k < group if h < heads // 2 else (q - k) % group == 0
        if pattern == "block_sparse" and h >= heads // 2:  # previous block is entirely visible (it is past)
            for q in range(group, length):
                for k in range((q // group - 1) * group, (q // group) * group):
                    m[h, q, k] = True
    return m


@pytest.mark.parametrize("variant", P.VARIANTS)
@pytest.mark.parametrize("pattern", P.PATTERNS)
def test_mask_functions_equal_brute_force(pattern, variant):
    got = P.dense_mask(P.pattern_mask(pattern, G, H, L, variant), H, L)
    assert got.shape == (H, L, L) and got.dtype == torch.bool
    assert torch.equal(got, brute(pattern, variant))


def test_paper_worked_example_last_shifted_group_wraps():
    """L=16, G=4: the paper variant's last shifted group is [14, 15, 0, 1]."""
    m = P.dense_mask(P.pattern2(G, L, "paper"), 1, L)[0]
    assert [k for k in range(L) if m[1, k]] == [0, 1, 14, 15]  # token 1 sees its group [14, 15, 0, 1]
    assert [k for k in range(L) if m[15, k]] == [14, 15]
    assert m.triu(1).any()  # a future token is visible: the leak
    leak_free = P.dense_mask(P.pattern2(G, L, "leak_free"), 1, L)[0]
    assert not leak_free.triu(1).any()
    assert [k for k in range(L) if leak_free[1, k]] == [0, 1]
    assert [k for k in range(L) if leak_free[15, k]] == [14, 15]


def test_every_pattern_except_paper_shift_is_causal():
    for pattern in P.PATTERNS:
        assert not P.dense_mask(P.pattern_mask(pattern, G, H, L, "leak_free"), H, L).triu(1).any(), pattern


def test_group_equal_to_length_without_shift_is_full_causal():
    assert torch.equal(P.dense_mask(P.pattern1(L), 1, L), P.dense_mask(P.causal(), 1, L))


@pytest.mark.parametrize("heads", [H, 9, 15, 1])
def test_s2_splits_heads_as_the_official_code_slices_them(heads):
    """Heads [0, H//2) aligned, [H//2, H) shifted: with odd H the shifted half is the larger one."""
    m = P.dense_mask(P.s2(G, heads, L), heads, L)
    p1, p2 = P.dense_mask(P.pattern1(G), 1, L)[0], P.dense_mask(P.pattern2(G, L), 1, L)[0]
    assert all(torch.equal(m[h], p1) for h in range(heads // 2))
    assert all(torch.equal(m[h], p2) for h in range(heads // 2, heads))
    assert P.Grouping(G).first_shifted_head(heads) == heads // 2


def test_mask_functions_work_with_flex_block_mask():
    create_block_mask = pytest.importorskip("torch.nn.attention.flex_attention").create_block_mask
    from torch.nn.attention.flex_attention import create_mask

    mask = P.s2(G, H, L, "paper")
    dense = create_mask(mask, 1, H, L, L, device="cpu")[0]
    assert torch.equal(dense, P.dense_mask(mask, H, L))
    create_block_mask(mask, B=None, H=H, Q_LEN=L, KV_LEN=L, device="cpu")  # vmap-compatible: no error


def test_receptive_field_grows_only_with_the_shift():
    s2 = P.dense_mask(P.s2(G, H, L), H, L)
    no_shift = P.dense_mask(P.pattern1(G), H, L)
    for layers in (1, 2, 3):
        reach_s2, reach_p1 = P.receptive_field(s2, layers), P.receptive_field(no_shift, layers)
        assert torch.equal(reach_p1, no_shift[0])  # no shift: stuck in the group forever
        assert not reach_s2.triu(1).any()  # still causal
    # With the shift, each extra layer reaches about G/2 further back; after 3 layers token 15 sees 8..15.
    assert [k for k in range(L) if P.receptive_field(s2, 1)[15, k]] == [12, 13, 14, 15]
    assert [k for k in range(L) if P.receptive_field(s2, 2)[15, k]] == list(range(10, 16))
    assert [k for k in range(L) if P.receptive_field(s2, 3)[15, k]] == list(range(8, 16))


def test_unknown_pattern_and_variant_raise():
    with pytest.raises(ValueError, match="attention_pattern='diagonal'"):
        P.pattern_mask("diagonal", G, H, L)
    with pytest.raises(ValueError, match="variant='rolled'"):
        P.pattern2(G, L, "rolled")
