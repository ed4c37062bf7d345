"""longlora_kit.rope against transformers 5.x: frequencies, scaling, cos/sin, rotation, whole model."""

import itertools
import logging
import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from longlora_kit import build_model, rope, tiny_config

# The frequencies are float32; pairs computed in a different (equally valid) order differ by an ulp.
RTOL = 1e-6


@pytest.fixture(autouse=True)
def _quiet_transformers():
    # transformers logs harmless notes (e.g. llama3's original length == max length); keep output clean.
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def make_config(head_dim, theta, length, rope_parameters):
    return LlamaConfig(hidden_size=2 * head_dim, num_attention_heads=2, head_dim=head_dim,
                       max_position_embeddings=length, rope_parameters={**rope_parameters, "rope_theta": theta})


def reference_inv_freq(config, seq_len=None):
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        return LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    return ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len)


def rope_parameters_for(rope_type, factor, length):
    return {
        "default": {"rope_type": "default"},
        "linear": {"rope_type": "linear", "factor": float(factor)},
        "dynamic": {"rope_type": "dynamic", "factor": float(factor)},
        "yarn": {"rope_type": "yarn", "factor": float(factor), "original_max_position_embeddings": length},
        "llama3": {"rope_type": "llama3", "factor": float(factor), "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": length},
    }[rope_type]


GRID = list(itertools.product((32, 64, 128), (1e4, 5e5), (256, 4096), (2, 3, 8, 32)))


@pytest.mark.parametrize("rope_type", rope.ROPE_TYPES)
def test_inv_freq_and_scaling_match_transformers_over_grid(rope_type):
    for head_dim, theta, length, factor in GRID:
        config = make_config(head_dim, theta, length, rope_parameters_for(rope_type, factor, length))
        # dynamic: below, at, just above and far above the trained length
        seq_lens = (None, length // 2, length, length + 1, factor * length + 7) if rope_type == "dynamic" else (None,)
        for seq_len in seq_lens:
            expected, expected_scaling = reference_inv_freq(config, seq_len)
            got, scaling = rope.inv_freq(config, seq_len=seq_len)
            assert got.shape == (head_dim // 2,) and got.dtype == torch.float32
            torch.testing.assert_close(got, expected, rtol=RTOL, atol=0)
            assert scaling == pytest.approx(expected_scaling, rel=1e-12)


def test_yarn_options_match_transformers():
    base = {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 512}
    variants = [{}, {"truncate": False}, {"beta_fast": 16, "beta_slow": 2}, {"attention_factor": 1.5},
                {"mscale": 1.0, "mscale_all_dim": 0.5}]
    for extra in variants:
        config = make_config(64, 1e4, 4096, {**base, **extra})
        expected, expected_scaling = reference_inv_freq(config)
        got, scaling = rope.inv_freq(config)
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=0)
        assert scaling == pytest.approx(expected_scaling)
    assert rope.inv_freq(config)[1] != 1.0  # the temperature is really applied


def test_linear_is_position_interpolation():
    """f'(x, m) = f(x, m/s): linear ×s at position m equals plain RoPE at m/s."""
    plain = tiny_config()
    linear = rope.extend_config(plain, 4 * plain.max_position_embeddings)
    positions = torch.arange(0, 1024)
    cos_linear, sin_linear = rope.cos_sin(rope.inv_freq(linear)[0], positions)
    cos_plain, sin_plain = rope.cos_sin(rope.inv_freq(plain)[0], positions.float() / 4)
    torch.testing.assert_close(cos_linear, cos_plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin_linear, sin_plain, rtol=0, atol=1e-6)


def test_ntk_aware_keeps_fastest_and_slows_slowest_by_factor():
    head_dim, theta, factor = 64, 1e4, 8.0
    plain = rope.rope_frequencies(head_dim, theta).double()
    ntk = rope.rope_frequencies(head_dim, rope.ntk_aware_theta(theta, factor, head_dim)).double()
    ratio = plain / ntk
    assert ratio[0].item() == pytest.approx(1.0)
    assert ratio[-1].item() == pytest.approx(factor, rel=1e-5)
    assert torch.all(ratio[1:] > ratio[:-1])  # geometric in between


@pytest.mark.parametrize("rope_type", rope.ROPE_TYPES)
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_rotary_module_cos_sin_and_rotation_match_transformers(rope_type, dtype):
    for head_dim, length in ((32, 256), (128, 512)):
        config = make_config(head_dim, 1e4, length, rope_parameters_for(rope_type, 3, length))
        theirs, ours = LlamaRotaryEmbedding(config), rope.KitRotaryEmbedding(config)
        x = torch.zeros(2, 3, dtype=dtype)
        for seq_len in (length // 2, 3 * length, 2 * length, length // 4):  # dynamic: grow, keep, reset
            position_ids = torch.arange(seq_len).expand(2, seq_len)
            cos_ref, sin_ref = theirs(x, position_ids)
            cos, sin = ours(x, position_ids)
            assert cos.dtype == dtype and cos.shape == (2, seq_len, head_dim)
            # fp32: θ may differ by an ulp (yarn/llama3 blend order); bf16: at most one bf16 step near 1
            tolerance = 2e-5 if dtype == torch.float32 else 8e-3
            torch.testing.assert_close(cos, cos_ref, rtol=0, atol=tolerance)
            torch.testing.assert_close(sin, sin_ref, rtol=0, atol=tolerance)
            q = torch.randn(2, 2, seq_len, head_dim, dtype=dtype)
            k = torch.randn(2, 1, seq_len, head_dim, dtype=dtype)  # grouped-query: fewer key heads
            q_ref, k_ref = apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
            q_rot, k_rot = rope.apply_rotary(q, k, cos_ref, sin_ref)
            torch.testing.assert_close(q_rot, q_ref, rtol=0, atol=0)
            torch.testing.assert_close(k_rot, k_ref, rtol=0, atol=0)


def test_cos_sin_from_plain_positions_broadcasts_over_batch_and_heads():
    freqs, _ = rope.inv_freq(tiny_config())
    cos, sin = rope.cos_sin(freqs, torch.arange(10))  # (L, d)
    q = k = torch.randn(1, 4, 10, 32)
    q_rot, _ = rope.apply_rotary(q, k, cos, sin)
    q_ref, _ = apply_rotary_pos_emb(q, k, cos[None], sin[None])
    torch.testing.assert_close(q_rot, q_ref, rtol=0, atol=0)
    # a rotation keeps lengths
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))


def test_scores_depend_only_on_relative_distance():
    freqs, _ = rope.inv_freq(tiny_config())
    q = torch.randn(1, 1, 1, 32).expand(1, 1, 40, 32)
    k = torch.randn(1, 1, 1, 32).expand(1, 1, 40, 32)
    cos, sin = rope.cos_sin(freqs, torch.arange(40))
    q_rot, k_rot = rope.apply_rotary(q, k, cos, sin)
    scores = q_rot[0, 0] @ k_rot[0, 0].T  # (L, L)
    torch.testing.assert_close(scores.diagonal(5)[:10], scores.diagonal(5)[10:20], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", rope.EXTEND_METHODS)
def test_tiny_llama_with_kit_rotary_gives_transformers_logits(method):
    config = rope.extend_config(tiny_config(num_hidden_layers=1), 1000, method=method)
    reference = build_model(config, seed=0).eval()
    ours = build_model(config, seed=0).eval()
    ours.model.rotary_emb = rope.KitRotaryEmbedding(ours.config)
    input_ids = torch.randint(0, config.vocab_size, (1, 320))  # beyond the trained 256
    with torch.no_grad():
        for length in (320, 64):  # dynamic: stretched, then back to plain RoPE
            expected = reference(input_ids[:, :length]).logits
            got = ours(input_ids[:, :length]).logits
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_editing_config_after_build_has_no_effect_but_extend_before_does():
    model = build_model(tiny_config(num_hidden_layers=1), seed=0).eval()
    before = model.model.rotary_emb.inv_freq.clone()
    model.config.rope_parameters = {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4}
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, before)  # the pitfall
    extended = build_model(rope.extend_config(tiny_config(num_hidden_layers=1), 1024), seed=0)
    torch.testing.assert_close(extended.model.rotary_emb.inv_freq, before / 4)


def test_extend_config_returns_a_new_config():
    config = tiny_config()
    snapshot = config.to_dict()
    new = rope.extend_config(config, 1000)
    assert config.to_dict() == snapshot and new is not config
    assert new.rope_parameters == {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}
    assert new.max_position_embeddings == 1000
    # LongLoRA's own example: 4096 → 100k gives factor 25
    assert rope.extend_config(tiny_config(max_position_embeddings=4096), 100_000).rope_parameters["factor"] == 25.0


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), -float("inf"), 0.0, -2.0, 0.5])
@pytest.mark.parametrize("method", ["linear", "yarn", "ntk"])
def test_extend_config_refuses_a_factor_that_is_not_finite_and_at_least_one(method, factor):
    # nan used to pass the `factor < 1` check and give all-NaN logits (issue 15, item 8)
    with pytest.raises(ValueError, match=r"factor=.* must be a finite number >= 1"):
        rope.extend_config(tiny_config(), 512, method=method, factor=factor)


def test_extend_config_methods():
    config = tiny_config()
    yarn = rope.extend_config(config, 2048, method="yarn", beta_fast=16)
    assert yarn.rope_parameters["original_max_position_embeddings"] == 256
    assert yarn.rope_parameters["beta_fast"] == 16 and yarn.max_position_embeddings == 2048
    llama3 = rope.extend_config(config, 2048, method="llama3", factor=8)
    assert llama3.rope_parameters["factor"] == 8.0 and llama3.rope_parameters["high_freq_factor"] == 4.0
    dynamic = rope.extend_config(config, 2048, method="dynamic")
    assert dynamic.max_position_embeddings == 256  # dynamic reads it as the trained length
    ntk = rope.extend_config(config, 2048, method="ntk")
    assert ntk.rope_parameters["rope_theta"] == pytest.approx(1e4 * 8 ** (32 / 30))
    # an extended config can be extended again when the trained length is given
    again = rope.extend_config(yarn, 4096, original_length=256)
    assert again.rope_parameters["factor"] == 16.0
    for new in (yarn, llama3, dynamic, ntk):  # transformers builds the same frequencies from them
        torch.testing.assert_close(rope.inv_freq(new)[0], reference_inv_freq(new)[0], rtol=RTOL, atol=0)


def edited(**fields):
    """A valid config edited afterwards (transformers' own checks run only at construction)."""
    config = tiny_config()
    for name, value in fields.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (lambda: rope.inv_freq(tiny_config(rope_parameters={"rope_type": "linear", "factor": 0.5})), "factor"),
        (lambda: rope.inv_freq(edited(rope_parameters={"rope_type": "linear", "rope_theta": 1e4})), "factor"),
        (lambda: rope.inv_freq(edited(rope_parameters={"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4})),
         "low_freq_factor"),
        (lambda: rope.inv_freq(edited(rope_parameters={"rope_type": "longrope", "rope_theta": 1e4})), "rope_type"),
        (lambda: rope.inv_freq(edited(head_dim=33)), "head_dim"),
        (lambda: rope.extend_config(tiny_config(), 1000, factor=0.5), "factor"),
        (lambda: rope.extend_config(tiny_config(), 100), "target_length"),
        (lambda: rope.extend_config(tiny_config(), 1000, method="alibi"), "method"),
        (lambda: rope.extend_config(rope.extend_config(tiny_config(), 1000), 2000), "original_length"),
        (lambda: rope.extend_config(tiny_config(), 1000, beta_fast=8), "beta_fast"),
        (lambda: rope.ntk_aware_theta(1e4, 0.5, 64), "factor"),
        (lambda: rope.apply_rotary(torch.zeros(1, 1, 5, 8), torch.zeros(1, 1, 5, 8), torch.zeros(6, 8),
                                   torch.zeros(6, 8)), "q has shape"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(build, parameter):
    with pytest.raises(ValueError, match=parameter):
        build()


def test_missing_rope_theta_is_named():
    with pytest.raises(ValueError, match="rope_theta"):
        rope.inv_freq(edited(rope_parameters={"rope_type": "default"}))


def test_wavelengths_and_ramps():
    freqs = rope.rope_frequencies(64, 1e4)
    torch.testing.assert_close(rope.wavelengths(freqs), 2 * math.pi / freqs)
    keep = rope.yarn_ramp(64, 1e4, 256)
    assert keep[0] == 1 and keep[-1] == 0 and torch.all(keep[1:] <= keep[:-1])
    assert rope.yarn_attention_factor(16.0) == pytest.approx(0.1 * math.log(16) + 1)


def test_notebook_sizes_follow_profile():
    smoke, workshop = rope.notebook_sizes("smoke"), rope.notebook_sizes("workshop")
    assert smoke.keys() == workshop.keys()
    assert smoke["fit_length"] <= workshop["fit_length"]
