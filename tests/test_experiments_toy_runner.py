"""The toy runner's plumbing (no training here): settings per profile, the configs it builds, sharing."""

from experiments_fake import CODE

from longlora_kit.experiments.tables import select
from longlora_kit.experiments.toy_runner import ToyRunner, finetune_config, pretrain_config, settings_for


def test_profiles_define_every_setting_and_smoke_has_a_spread():
    names = {frozenset(settings_for(p)) for p in ("smoke", "workshop", "full")}
    assert len(names) == 1
    assert settings_for("smoke")["seeds"] >= 2 and settings_for("full")["seeds"] >= 3


def test_the_base_model_reads_keys_within_its_window_at_a_constant_rate(tmp_path):
    # what issue #6 found a 4-layer tiny Llama needs to learn the copy (train._tiny_recipe)
    settings = settings_for("full")
    config = pretrain_config(settings, tmp_path, CODE)
    assert config.seq_len == config.max_distance == settings["base_length"] == settings["model"]["max_position_embeddings"]
    assert config.lr_schedule == "constant" and (config.method, config.attention) == ("full", "full")


def test_finetune_configs_follow_the_spec(tmp_path):
    settings = settings_for("full")
    make = lambda spec, seed=0: finetune_config(spec, seed, settings, tmp_path / "base", tmp_path, CODE)
    table6 = select(["table6"])[0]
    dilated = make(table6.arm("dilated").spec)
    assert (dilated.seq_len, dilated.target_length) == (4 * settings["base_length"],) * 2
    assert (dilated.method, dilated.attention, dilated.attention_pattern) == ("lora+", "s2", "dilated")
    full_2x = make(select(["table1"])[0].arm("full attention, 2×").spec)
    assert (full_2x.seq_len, full_2x.method, full_2x.attention, full_2x.attention_pattern) == (
        2 * settings["base_length"], "full", "full", None)
    eighth = make(select(["table7"])[0].arm("G = 1/8").spec)
    assert eighth.group_size_ratio == 0.125 and eighth.lr == full_2x.lr  # one learning rate for every arm
    # one fine-tuning corpus (gaps up to 4x L0) and one interpolation for every arm
    assert dilated.max_distance == full_2x.max_distance == settings["finetune_max_distance"] == 4 * settings["base_length"]
    assert dilated.rope_method == full_2x.rope_method == "yarn"
    # a passkey arm reuses the model of the arm it measures again; another seed trains anew
    longlora = select(["passkey"])[0].arm("LongLoRA (LoRA+ S2, 4×)").spec
    table2_plus = select(["table2"])[0].arm("LoRA+ (embed + norm)").spec
    assert make(longlora).out_dir == make(table2_plus).out_dir != make(table2_plus, seed=1).out_dir
    runner = ToyRunner()
    assert runner.share_key(longlora, 0) == runner.share_key(table2_plus, 0)
    assert runner.share_key(longlora, 0) != runner.share_key(table2_plus, 1)


def test_runs_without_training_share_nothing():
    runner = ToyRunner()
    base, pi = (a.spec for a in select(["passkey"])[0].arms[:2])
    assert runner.share_key(base, 0) != runner.share_key(pi, 0) != runner.share_key(pi, 1)
