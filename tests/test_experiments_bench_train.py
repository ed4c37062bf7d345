"""``bench train`` end to end on a tiny shape (CPU, seconds): rows, ratios, the markdown table, the CLI."""

import pytest

from longlora_kit.cli import main
from longlora_kit.experiments.bench_train import bench_config, markdown_table, train_benchmark


def test_train_benchmark_tiny_shape():
    config = bench_config("tiny", num_layers=1, hidden_size=64, vocab_size=128)
    assert (config.hidden_size, config.num_attention_heads, config.head_dim) == (64, 2, 32)
    rows = train_benchmark(config, contexts=(64,), steps=1, warmup=1, loss_chunk=32)
    assert [(r["context"], r["attention"]) for r in rows] == [(64, "s2"), (64, "full")]
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["peak_gb"] > 0 and not r["oom"]
        assert r["kernel"] == ("s2_attn" if r["attention"] == "s2" else "sdpa")
        assert r["mfu"] is None  # no peak FLOP/s for a CPU
        # the estimator (CPU, fp32, chunked loss) lands near the allocator's peak
        assert r["predicted_gb"] == pytest.approx(r["peak_gb"], rel=0.5)
    s2_rows = [r for r in rows if r["attention"] == "s2"]
    for r in s2_rows:
        full = next(f for f in rows if f["context"] == r["context"] and f["attention"] == "full")
        assert r["speedup_vs_full"] == pytest.approx(r["tokens_per_s"] / full["tokens_per_s"], rel=0.01)
    table = markdown_table(rows, "tiny")
    assert table.count("\n| 64 |") == 2 and "Table 12" in table
    for r in rows:
        assert r["tokens_per_s"] == pytest.approx(64 / r["step_s"], rel=0.01)


def test_paper_columns_line_up():
    rows = [dict(context=65536, attention="full", kernel="flash_attention_2", tokens_per_s=None, peak_gb=None,
                 predicted_gb=90.0, mfu=None, oom=True),
            dict(context=65536, attention="s2", kernel="s2_attn", tokens_per_s=1000.0, peak_gb=70.0,
                 predicted_gb=71.0, mfu=0.41, oom=False)]
    table = markdown_table(rows, "7B", machine="test")
    assert "| 65536 | full | flash_attention_2 | OOM |" in table and "| 71.1 | 92.5 |" in table  # LoRA row
    assert "41.0%" in table and "| 69.8 | 52.4 |" in table  # LongLoRA row


def test_bad_context():
    config = bench_config("tiny", num_layers=1)
    with pytest.raises(ValueError, match="multiple of 4"):
        train_benchmark(config, contexts=(66,), steps=1)
    with pytest.raises(ValueError, match="head_dim"):
        bench_config("llama2-7b", hidden_size=100)


def test_cli_bench_train(tmp_path, capsys):
    out = tmp_path / "bench.md"
    code = main(["bench", "train", "--preset", "tiny", "--num-layers", "1", "--hidden-size", "64",
                 "--vocab-size", "128", "--contexts", "64", "--steps", "1", "--warmup", "0",
                 "--loss-chunk", "32", "--append", str(out)])
    assert code == 0
    assert "| 64 | s2 |" in out.read_text() and "appended" in capsys.readouterr().out
