"""longlora_kit.config: TrainConfig, its fingerprint, and validation of every field before a run starts."""

import pytest

from longlora_kit.config import RUNTIME_FIELDS, TrainConfig, TrainResult, validate


@pytest.mark.parametrize("field,value,match", [
    ("method", "qlora", "method='qlora' is not known; choose one of full, lora"),
    ("attention", "flash2", "attention='flash2' is not known"),
    ("lr_schedule", "step", "lr_schedule='step' is not known"),
    ("rope_method", "pi", "rope_method='pi' is not known; choose one of linear"),
    ("attention_pattern", "bogus", "attention_pattern='bogus' is not known; choose one of s2"),
    ("mixed_precision", "fp8", "mixed_precision='fp8' is not known"),
    ("loss_chunk", 0, "loss_chunk must be >= 1, got 0"),
    ("save_every", -1, "save_every must be >= 0, got -1"),
    ("log_every", 0, "log_every must be >= 1"),
    ("max_steps", 0, "max_steps must be >= 1"),
    ("grad_accum", 1.5, "grad_accum must be >= 1, got 1.5"),
    ("stop_after", 0, "stop_after must be >= 1"),
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("lr", -1e-3, "lr must be a finite number > 0"),
    ("val_fraction", 1.0, "val_fraction must lie strictly between 0 and 1"),
    ("seq_len", 36, r"seq_len=36 does not fit S2-Attn groups.*use L=32 or L=40"),
])
def test_each_bad_field_is_named_with_its_fix(field, value, match):
    attention = {"seq_len": {"attention": "s2"}}.get(field, {})
    with pytest.raises(ValueError, match=match):
        validate(TrainConfig(**{field: value, **attention}))


def test_good_configs_pass_including_the_edges():
    for config in (TrainConfig(), TrainConfig(save_every=0, warmup_steps=0, stop_after=1),
                   TrainConfig(attention="s2", attention_pattern="pattern1", max_grad_norm=float("inf")),
                   TrainConfig(seq_len=64, target_length=64)):
        assert validate(config) is None
    with pytest.raises(ValueError, match="seq_len=128 exceeds target_length=64"):
        validate(TrainConfig(seq_len=128, target_length=64))


def test_the_fingerprint_holds_what_the_run_computes_not_how_it_is_watched():
    fp = TrainConfig(betas=(0.9, 0.95)).fingerprint()
    assert not set(RUNTIME_FIELDS) & set(fp) and fp["betas"] == [0.9, 0.95]  # JSON-ready
    assert TrainConfig(save_every=5, progress=False).fingerprint() == TrainConfig().fingerprint()
    assert TrainConfig(lr=2e-3).fingerprint() != TrainConfig().fingerprint()


def test_result_summary_has_first_and_final_loss():
    result = TrainResult(out_dir="x", model=None, tokenizer=None, losses=[3.0, 2.0], steps=2, tokens=8, seconds=1.0,
                         tokens_per_second=8.0, trainable_parameters=1, total_parameters=2, peak_memory_mb=None)
    summary = result.summary()
    assert summary["first_loss"] == 3.0 and summary["final_loss"] == 2.0 and "model" not in summary
