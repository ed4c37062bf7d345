"""budgets: one table of per-profile numbers; its readers give exactly the numbers they gave before."""

import pytest

from longlora_kit import budgets, presets, recipes
from longlora_kit.experiments.toy_runner import settings_for

# The toy reproduction's settings as literals, copied from toy_runner.settings_for before it was derived
# from the recipe: `make reproduce` must stay bit-identical, so the derivation must give these exactly.
TOY_SETTINGS = {
    "smoke": dict(seeds=2, model=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, max_position_embeddings=64),
                  base_length=64, data="synthetic", pretrain_documents=40, pretrain_steps=10, pretrain_batch=4,
                  pretrain_lr=3e-3, pretrain_warmup=2, finetune_max_distance=256, finetune_documents=24,
                  finetune_steps=2, finetune_batch=2, finetune_lr=2e-3, warmup_steps=0, eval_windows=2,
                  passkey_depths=[0.5], passkey_trials=2),
    "workshop": dict(seeds=2, model=dict(max_position_embeddings=128), base_length=128, data="synthetic",
                     pretrain_documents=600, pretrain_steps=1200, pretrain_batch=16, pretrain_lr=3e-3,
                     pretrain_warmup=30, finetune_max_distance=512, finetune_documents=200, finetune_steps=40,
                     finetune_batch=4, finetune_lr=2e-3, warmup_steps=10, eval_windows=16,
                     passkey_depths=[0.2, 0.6], passkey_trials=6),
    "full": dict(seeds=3, model=dict(max_position_embeddings=128), base_length=128, data="synthetic",
                 pretrain_documents=600, pretrain_steps=1200, pretrain_batch=16, pretrain_lr=3e-3,
                 pretrain_warmup=30, finetune_max_distance=512, finetune_documents=200, finetune_steps=80,
                 finetune_batch=4, finetune_lr=2e-3, warmup_steps=10, eval_windows=16,
                 passkey_depths=[0.2, 0.6], passkey_trials=6),
}


@pytest.mark.parametrize("profile", ["smoke", "workshop", "full"])
def test_toy_settings_derived_from_the_recipe_equal_the_old_literals(profile):
    got = settings_for(profile)
    assert got == TOY_SETTINGS[profile]
    assert [type(v) for v in got.values()] == [type(v) for v in TOY_SETTINGS[profile].values()]  # 3e-3 stays a float


def test_the_toy_base_is_the_workshop_recipe():
    pre = recipes.recipe("tiny", "pretrain", "workshop")
    full = settings_for("full")
    assert (full["pretrain_lr"], full["pretrain_steps"], full["base_length"]) == (pre["lr"], pre["max_steps"], pre["seq_len"])


def test_the_tiny_preset_is_the_tiny_recipe_not_a_second_one():
    ext = recipes.recipe("tiny", "extend", "workshop")
    for profile in ("smoke", "workshop", "full"):
        ext = recipes.recipe("tiny", "extend", profile)
        pre = recipes.recipe("tiny", "pretrain", profile)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LONGLORA_KIT_PROFILE", profile)
            p = presets.get_preset("tiny")
        assert (p.learning_rate, p.target_context, p.rope_method, p.attention, p.max_steps, p.micro_batch) == (
            ext["lr"], ext["target_length"], ext["rope_method"], ext["attention"], ext["max_steps"], ext["batch_size"])
        assert p.original_context == pre["seq_len"] and p.rope_factor == budgets.TINY_RECIPE["extend"]["factor"]


def test_the_recipe_numbers_the_readme_states():
    pre, ext = recipes.recipe("tiny", "pretrain", "workshop"), recipes.recipe("tiny", "extend", "workshop")
    assert (pre["seq_len"], ext["seq_len"], pre["lr"], ext["lr"]) == (128, 512, 3e-3, 2e-3)


def test_every_cell_names_all_three_profiles():
    with pytest.raises(TypeError):
        budgets.by(1, 2)  # a forgotten profile fails where the table is written
    assert budgets.at(budgets.by(1, 2, 3), "workshop") == 2
