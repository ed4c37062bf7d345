import plotly.io as pio
import pytest
import torch

from longlora_kit import models, utils


def test_get_device_prints_choice(capsys):
    device = utils.get_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else device.type)
    assert f"using device {device.type}" in capsys.readouterr().out


def test_seed_everything_repeats():
    g1 = utils.seed_everything(7)
    a = (torch.rand(3), torch.rand(3, generator=g1))
    g2 = utils.seed_everything(7)
    b = (torch.rand(3), torch.rand(3, generator=g2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        utils.seed_everything(-1)


def test_environment_report_has_versions():
    report = utils.environment_report()
    assert report["torch"] == torch.__version__
    for key in ("transformers", "peft", "accelerate", "device", "flash-attn", "profile"):
        assert report[key]
    assert report["profile"] == "smoke"
    text = utils.format_report(report)
    assert text.count("\n") == len(report) - 1


def test_flash_attn_absent_on_cpu():
    if not torch.cuda.is_available():
        assert utils.flash_attn_available() is False


def test_setup_notebook_pins_renderer():
    utils.setup_notebook()
    assert pio.renderers.default == "plotly_mimetype"


def test_tiny_model_parameter_count_matches_hand_count():
    cfg = models.tiny_config()
    model = models.build_model(cfg)
    d, v, f, n = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_layer = 4 * d * d + 3 * d * f + 2 * d  # q,k,v,o + gate,up,down + two RMSNorms
    expected = v * d + n * per_layer + d + v * d  # embeddings + layers + final norm + LM head
    assert models.count_parameters(model) == expected
    logits = model(torch.randint(0, v, (1, 16))).logits
    assert logits.shape == (1, 16, v)


def test_cpu_name_is_a_plain_string():
    name = utils.cpu_name()
    assert isinstance(name, str) and name and "\n" not in name
