"""The attention benchmark runs, and its markdown section is written once and replaced on re-runs."""

import pytest
import torch

from longlora_kit.cli import main
from longlora_kit.experiments import bench_attention as BA
from longlora_kit.s2attn import s2_attention


def test_benchmark_rows_and_markdown(tmp_path):
    rows = BA.attention_benchmark([64, 128], repeats=1, device="cpu", verbose=False)
    assert [r["length"] for r in rows] == [64, 128] and [r["group"] for r in rows] == [16, 32]
    assert all(r["full_ms"] > 0 and r["s2_ms"] > 0 and r["ratio"] == r["full_ms"] / r["s2_ms"] for r in rows)
    assert all(r["groups_ms"] > 0 and r["ceiling"] == r["full_ms"] / r["groups_ms"] for r in rows)
    assert all(r["overhead"] == r["s2_ms"] / r["groups_ms"] - 1 for r in rows)
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## someone else's section\n\nkeep me\n")
    for _ in range(2):  # a re-run replaces our section, leaves the others alone
        BA.write_section(out, BA.markdown_section(rows, "cpu", repeats=1), "cpu")
    text = out.read_text()
    assert text.count("## S2-Attn vs full causal attention") == 1 and "keep me" in text
    assert f"torch {torch.__version__}" in text and "| 128 | 32 |" in text and "| ceiling |" in text
    assert "B=1, H=8, D=64, G=L/4" in text  # the shape measured, from the rows
    other = BA.attention_benchmark([64], repeats=1, heads=4, head_dim=16, device="cpu", verbose=False)
    assert "B=1, H=4, D=16, G=L/4" in BA.markdown_section(other, "cpu", repeats=1)


def _ungroup(parts, heads, length, group):
    """The inverse of ``groups_of`` for the outputs: (B, N, G, D) + (B, H, G/2, D) -> (B, H, L, D)."""
    full, ends = parts
    batch, dim, half = full.shape[0], full.shape[-1], heads // 2
    n_plain = half * (length // group)
    plain = full[:, :n_plain].reshape(batch, half, length, dim)
    middle = full[:, n_plain:].reshape(batch, half, length - group, dim)
    shifted = torch.cat([ends[:, :half], middle, ends[:, half:]], dim=2)
    return torch.cat([plain, shifted], dim=1)


def test_the_pregathered_groups_give_s2s_output():
    # "groups alone" times the very kernel calls S2 makes: put back in place, their outputs are S2's
    q, k, v, _ = BA._inputs(64, heads=4, head_dim=8, dtype=torch.float32, device=torch.device("cpu"))
    triples, grads = BA._pregathered_groups(q, k, v, group=16)
    assert [t[0].shape for t in triples] == [(1, 14, 16, 8), (1, 4, 8, 8)] == [g.shape for g in grads]
    outs = [torch.nn.functional.scaled_dot_product_attention(*t, is_causal=True) for t in triples]
    expected = s2_attention(q, k, v, group_size=16, variant="leak_free", backend="sdpa")
    torch.testing.assert_close(_ungroup(outs, 4, 64, 16), expected, rtol=0, atol=1e-6)


def test_the_pregathered_groups_refuse_grouped_query_heads():
    q = torch.randn(1, 4, 32, 8)
    kv = torch.randn(1, 2, 32, 8)
    with pytest.raises(ValueError, match="equal head counts"):
        BA._pregathered_groups(q, kv, kv, group=8)


def test_cli_bench_attention(tmp_path, capsys):
    out = tmp_path / "b.md"
    assert main(["bench", "attention", "--lengths", "64", "--repeats", "1", "--output", str(out)]) == 0
    assert "| 64 | 16 |" in out.read_text()
    assert main(["bench", "attention", "--lengths", "100", "--repeats", "1", "--output", "-"]) == 2
    assert "G=25" in capsys.readouterr().err
