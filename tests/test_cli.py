import dataclasses
import subprocess
import sys

import pytest

from longlora_kit import cli
from longlora_kit.cli.train import config_overrides
from longlora_kit.config import TrainConfig
from longlora_kit.recipes import pretrain_config

COMMANDS = ("env", "tokenizer", "pretrain", "extend", "eval", "memory", "reproduce", "bench", "fetch", "chat")


def test_env_command_prints_report(capsys):
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "transformers" in out and "profile" in out


def test_console_script_help_lists_every_command_without_loading_torch():
    code = ("import sys; from longlora_kit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH LOADED' if 'torch' in sys.modules else 'no torch')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert listed >= set(COMMANDS), set(COMMANDS) - listed
    assert result.stdout.strip().endswith("no torch")  # handlers import the library lazily
    module = subprocess.run([sys.executable, "-m", "longlora_kit.cli", "--help"], capture_output=True, text=True)
    assert module.returncode == 0 and "pretrain" in module.stdout  # `python -m longlora_kit.cli` (accelerate launch)


def _example(field: dataclasses.Field):
    """(command-line words, the value they must set) for one TrainConfig field, different from its default."""
    flag = "--" + field.name.replace("_", "-")
    kind = field.type.replace(" | None", "")
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if kind == "bool":
        return ([f"--no-{flag[2:]}"] if default else [flag]), not default
    if kind == "dict":
        return [flag, '{"num_hidden_layers": 1}'], {"num_hidden_layers": 1}
    if kind.startswith("tuple"):
        return [flag, "0.8", "0.99"], (0.8, 0.99)
    value = {"int": 7, "float": 0.125, "str": "x-value"}[kind]
    return [flag, str(value)], value


@pytest.mark.parametrize("command", ["pretrain", "extend"])
@pytest.mark.parametrize("field", dataclasses.fields(TrainConfig), ids=lambda f: f.name)
def test_every_train_config_field_has_an_option_that_sets_it(command, field):
    words, value = _example(field)
    args = cli.build_parser().parse_args([command, *words])
    assert config_overrides(args)[field.name] == value


def test_optional_fields_take_none_and_options_reach_the_config():
    args = cli.build_parser().parse_args(["pretrain", "--target-length", "none", "--steps", "3", "--lr", "0.01",
                                          "--no-measure-memory", "--model-overrides", '{"num_hidden_layers": 1}'])
    overrides = config_overrides(args)
    config = pretrain_config(overrides.pop("out_dir"), args.preset, "smoke", **overrides)
    assert (config.target_length, config.max_steps, config.lr, config.measure_memory) == (None, 3, 0.01, False)
    assert config.model_overrides == {"num_hidden_layers": 1}  # replaces the recipe's overrides, as any field


def test_old_attention_spelling_is_refused_naming_the_new_one(capsys):
    assert cli.main(["extend", "--profile", "smoke", "--attention", "sdpa", "--out", "runs/never"]) == 2
    assert "attention='sdpa' is the old spelling; write attention='full'" in capsys.readouterr().err
