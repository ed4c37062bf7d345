"""Every per-profile number of the kit, in one table: sizes, step counts, learning rates.

The kit runs at three budgets, chosen by ``LONGLORA_KIT_PROFILE`` (:mod:`longlora_kit.profile`):

=========  =====================================================================================
profile    what it is for
=========  =====================================================================================
smoke      the tests: tiny sizes, seconds per notebook; checks the machinery, claims nothing
workshop   the default for people: minutes on a laptop CPU, and the numbers the notebooks discuss
full       reproduction-grade: longer runs, more seeds (``make reproduce`` commits its results)
=========  =====================================================================================

A number that differs between profiles is written ``by(smoke, workshop, full)``, so each row of a
table reads left to right like the table above; a plain value is the same at every budget.
:func:`at` picks one profile's column out of a whole table:

>>> at(TINY_RECIPE["pretrain"], "workshop")["max_steps"], at(TINY_RECIPE["pretrain"], "smoke")["max_steps"]
(1200, 40)
>>> at({"lr": 3e-3, "steps": by(40, 1200, 3000)}, "full")
{'lr': 0.003, 'steps': 3000}

Readers of these tables (they keep their old names, so notebooks need not change): the tiny recipe
(``recipes.recipe("tiny", ...)``, what ``longlora-kit pretrain`` / ``extend`` train) and the ``"tiny"``
preset built from it (``presets.get_preset("tiny")``); the toy reproduction
(``experiments.toy_runner.settings_for``, derived from the recipe); ``evaluate.eval_settings``; the
notebooks' sizes (``rope.notebook_sizes``, ``s2attn.notebook_settings``, ``lora.notebook_settings``,
``presets.notebook_settings``, ``real_eval.notebook_settings``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .profile import current_profile


class by(NamedTuple):  # noqa: N801 (reads as a table cell: by(smoke, workshop, full))
    """One number per profile."""

    smoke: Any
    workshop: Any
    full: Any


def at(table, profile: str | None = None):
    """``table`` with every :class:`by` cell replaced by the value for ``profile`` (default: the active one)."""
    name = current_profile(profile)
    if isinstance(table, by):
        return at(getattr(table, name), name)
    if isinstance(table, dict):
        return {key: at(value, name) for key, value in table.items()}
    return table


# --------------------------------------------------------------------------------------------------
# The tiny recipe: `longlora-kit pretrain` then `extend` (notebook 04)

#: ``tiny_config`` overrides. Workshop/full: its 4 layers, pre-trained at 128 tokens (issue #6: with 4
#: layers the copy forms by step ~800; 2 layers still sat near 1 nat per digit at step 1000).
TINY_MODEL = by(
    smoke=dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=2, max_position_embeddings=64),
    workshop=dict(max_position_embeddings=128),
    full=dict(max_position_embeddings=128),
)

TINY_RECIPE = {
    # full fine-tuning, full attention, at the model's own length, on keys at most that far apart
    "pretrain": dict(lr=3e-3, lr_schedule="constant", warmup_steps=by(5, 30, 50), max_steps=by(40, 1200, 3000),
                     batch_size=by(4, 16, 16), n_documents=by(40, 600, 2000)),
    # `factor` x the pre-training length with YaRN + S2-Attn + LoRA+ (YaRN, not linear PI: with head_dim 32
    # a 4x linear squeeze of the fastest frequencies destroys the tiny model's copy; issue #6)
    "extend": dict(factor=4, rope_method="yarn", method="lora+", attention="s2", lr=2e-3, lr_schedule="constant",
                   warmup_steps=by(2, 10, 20), max_steps=by(10, 200, 1000), batch_size=by(1, 4, 4),
                   n_documents=by(40, 600, 2000)),
}

def tiny_recipe(stage: str, profile: str | None = None) -> dict:
    """``TrainConfig`` fields of the tiny recipe's ``stage`` ("pretrain" / "extend") under ``profile``.

    >>> tiny_recipe("extend", "workshop")["seq_len"], tiny_recipe("extend", "smoke")["seq_len"]
    (512, 256)
    """
    # The numbers are budgets.TINY_RECIPE's; this says how they become TrainConfig fields: the pre-training
    # length is the model's own, the extension `factor` x that, and keys are mentioned at most one
    # training length apart (the copy the model must learn spans the whole window).
    model = at(TINY_MODEL, profile)
    short = model["max_position_embeddings"]
    if stage == "pretrain":
        return dict(model_overrides=model, seq_len=short, max_distance=short, **at(TINY_RECIPE["pretrain"], profile))
    if stage == "extend":
        fields = at(TINY_RECIPE["extend"], profile)
        long = fields.pop("factor") * short
        return dict(seq_len=long, target_length=long, max_distance=long, **fields)
    raise ValueError(f"stage={stage!r} is not a training stage; use 'pretrain' or 'extend'")


# --------------------------------------------------------------------------------------------------
# The toy reproduction (`longlora-kit reproduce`, notebook 05): the tiny recipe, resized

#: Its base and fine-tuning runs are the tiny recipe at ``recipe_budget`` with these overrides. The full
#: profile re-uses the *workshop* base (the committed numbers were measured with it) and only fine-tunes
#: longer, with a third seed; smoke shrinks the base further so the whole reproduction takes seconds.
REPRODUCE = dict(
    recipe_budget=by("smoke", "workshop", "workshop"),
    pretrain_overrides=by(
        smoke=dict(model_overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64),
                   max_steps=10, warmup_steps=2),
        workshop={}, full={}),
    extend_overrides=by(
        smoke=dict(max_steps=2, batch_size=2, warmup_steps=0, n_documents=24),
        workshop=dict(max_steps=40, n_documents=200),
        full=dict(max_steps=80, n_documents=200)),
    seeds=by(2, 2, 3),
    eval_windows=by(2, 16, 16),            # windows of L in the validation stream
    passkey_depths=by([0.5], [0.2, 0.6], [0.2, 0.6]),
    passkey_trials=by(2, 6, 6),            # per length and depth
)

# --------------------------------------------------------------------------------------------------
# Evaluation (`longlora-kit eval`, notebook 04): multiples of the longest evaluated length

EVAL = dict(
    tokens_per_longest=by(4, 16, 64),      # eval_tokens = this x the longest length
    passkey_depths=by([0.0, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0]),
    passkey_trials=by(2, 8, 20),
)

# --------------------------------------------------------------------------------------------------
# The notebooks' own sizes

#: notebook 01 (``rope.notebook_sizes``)
NOTEBOOK_01 = dict(
    head_dim=128,                          # the spectrum / methods demos use a Llama-2 head (cheap at any profile)
    theta=10_000.0,
    llama_trained_length=4096,             # Llama-2's pre-training length, for the spectrum
    fit_head_dim=by(64, 128, 128),         # PI-paper fit
    fit_length=by(256, 2048, 2048),        # trained length L there
    factor=4,                              # extension factor s in the extrapolation demo
    fine_steps=by(8, 16, 50),              # samples per unit distance
    bound_samples=by(4, 10, 100),          # random h for the bound
    model_length=by(320, 1024, 1024),      # tiny-Llama input
)

#: notebook 02 (``s2attn.notebook_settings``)
NOTEBOOK_02 = dict(
    timing_lengths=by((256, 512, 1024), (512, 1024, 2048, 4096), (1024, 2048, 4096, 8192)),
    timing_repeats=by(1, 2, 5),
    train_steps=by(8, 30, 150), train_length=by(64, 256, 512), train_batch=by(4, 8, 8),
)

#: notebook 03 (``lora.notebook_settings``): ``short_len``/``long_len`` are the pre-training and extension
#: lengths (PI factor long/short); ``ladder`` how far up the architecture ladder the budget table goes
NOTEBOOK_03 = dict(
    short_len=by(32, 32, 64), long_len=by(128, 128, 256), batch=by(4, 8, 8),
    pretrain_steps=by(40, 200, 1000), extend_steps=by(8, 30, 200), ranks=by((2, 32), (2, 8, 32), (2, 8, 32, 128)),
    lr=3e-3,
    ladder=by(("tiny", "SmolLM2-135M", "TinyLlama-1.1B", "Llama-2-7B"),
              ("tiny", "SmolLM2-135M", "TinyLlama-1.1B", "Llama-2-7B", "Llama-2-70B"),
              ("tiny", "SmolLM2-135M", "TinyLlama-1.1B", "Llama-2-7B", "Llama-2-70B")),
)

#: notebook 06 (``presets.notebook_settings``): the CPU run of a 7B-*shaped* narrow model, and the tiny
#: configuration whose peak memory is measured against the estimator
NOTEBOOK_06 = dict(
    run_steps=by(2, 20, 100), run_seq_len=by(64, 512, 1024), run_layers=by(2, 4, 8),
    run_heads=by(2, 2, 4),                 # x head_dim 128 = width
    run_documents=by(20, 200, 400), measure_context=by(128, 1024, 2048), measure_layers=2,
)

#: notebook 07 (``real_eval.notebook_settings``): the live measurements on SmolLM2 (the 16k ones are recorded)
NOTEBOOK_07 = dict(
    ppl_length=by(256, 4096, 4096), bucket=by(64, 1024, 1024),   # zero-shot perplexity by position, one forward
    passkey_length=by(256, 2048, 2048), passkey_depths=by((0.5,), (0.1, 0.5, 0.9), (0.1, 0.5, 0.9)),
    s2_length=by(128, 1024, 2048),                               # S2 vs full vs no-shift at step 0
    document_tokens=by(300, 6000, 6000),                         # the long document the chat answers about
)

__all__ = ["EVAL", "NOTEBOOK_01", "NOTEBOOK_02", "NOTEBOOK_03", "NOTEBOOK_06", "NOTEBOOK_07", "REPRODUCE", "TINY_MODEL",
           "TINY_RECIPE", "at", "by", "tiny_recipe"]
