"""The attention benchmark runs, and its markdown section is written once and replaced on re-runs."""

import torch

from longlora_kit import bench_attention as BA
from longlora_kit.cli import main


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


def test_the_pregathered_groups_give_s2s_output():
    # "groups alone" times the very kernel calls S2 makes: scattered back, their outputs are S2's
    q, k, v, _ = BA._inputs(64, heads=4, head_dim=8, dtype=torch.float32, device=torch.device("cpu"))
    triples, _ = BA._pregathered_groups(q, k, v, group=16)
    outs = [torch.nn.functional.scaled_dot_product_attention(*t, is_causal=True) for t in triples]
    _, scatter = BA._grouped(q, k, v, 16, "leak_free", "s2")
    expected = BA.s2_attention(q, k, v, 16, "leak_free", "sdpa")
    torch.testing.assert_close(scatter(outs), expected, rtol=0, atol=1e-6)


def test_cli_bench_attention(tmp_path, capsys):
    out = tmp_path / "b.md"
    assert main(["bench", "attention", "--lengths", "64", "--repeats", "1", "--output", str(out)]) == 0
    assert "| 64 | 16 |" in out.read_text()
    assert main(["bench", "attention", "--lengths", "100", "--repeats", "1", "--output", "-"]) == 2
    assert "G=25" in capsys.readouterr().err
