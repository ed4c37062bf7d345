"""longlora_kit.lora against independent references: a LoRA layer written here, peft, hand counts."""

import json
import warnings

import pytest
import torch
from torch import nn
from transformers import LlamaForCausalLM

from longlora_kit import lora
from longlora_kit.architectures import meta_model
from longlora_kit.models import build_model, count_parameters, tiny_config
from longlora_kit.rope import extend_config

warnings.filterwarnings("ignore", category=FutureWarning)

LORA_METHODS = ("lora", "lora+", "lora+embed", "lora+norm")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: a second thread costs more than it saves (and the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def extended_config():
    """A tiny Llama extended 4x with linear position interpolation (256 -> 1024)."""
    return extend_config(tiny_config(), 1024, method="linear")


def tokens(batch=2, length=24, seed=1):
    return torch.randint(0, 512, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def train_a_little(model, steps=3, lr=1e-2):
    """A few AdamW steps of next-token loss, so every trainable tensor moves."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        ids = tokens(seed=10 + step)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


class ScratchLoRA(nn.Module):
    """h = W x + (alpha/r) * B A x, written out: the reference for peft's LoRA layer."""

    def __init__(self, weight, lora_a, lora_b, alpha, r):
        super().__init__()
        self.weight, self.lora_a, self.lora_b, self.scale = weight, lora_a, lora_b, alpha / r

    def forward(self, x):  # x: (B, L, d_in)
        return x @ self.weight.T + self.scale * (x @ self.lora_a.T) @ self.lora_b.T  # (B, L, d_out)

    def merged_weight(self):
        return self.weight + self.scale * self.lora_b @ self.lora_a  # (d_out, d_in)


# --------------------------------------------------------------------------------------------- LoRA maths


@pytest.mark.parametrize("r, alpha", [(1, 1.0), (4, 16.0), (8, 16.0), (16, 8.0)])
def test_scratch_lora_equals_peft_forward_and_merged_weight(r, alpha):
    model = lora.apply(build_model(tiny_config()), "lora", r=r, alpha=alpha)
    layer = model.base_model.model.model.layers[1].self_attn.q_proj
    torch.nn.init.normal_(layer.lora_B["default"].weight)  # B = 0 at init would hide the scale
    weight = layer.base_layer.weight.detach().clone()
    lora_a = layer.lora_A["default"].weight.detach().clone()  # (r, d_in)
    lora_b = layer.lora_B["default"].weight.detach().clone()  # (d_out, r)
    assert lora_a.shape == (r, 128) and lora_b.shape == (128, r)
    scratch = ScratchLoRA(weight, lora_a, lora_b, alpha, r)

    x = torch.randn(2, 5, 128)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), scratch(x), rtol=1e-5, atol=1e-5)
    merged = lora.merge(model)
    torch.testing.assert_close(
        merged.model.layers[1].self_attn.q_proj.weight, scratch.merged_weight(), rtol=1e-6, atol=1e-6
    )


def test_zero_initialised_b_leaves_the_model_unchanged():
    ids = tokens()
    before = logits(build_model(tiny_config()), ids)
    wrapped = lora.apply(build_model(tiny_config()), "lora+")
    for name, param in wrapped.named_parameters():
        if "lora_B" in name:
            assert torch.count_nonzero(param) == 0, name
    torch.testing.assert_close(logits(wrapped, ids), before, rtol=0, atol=0)


def test_update_rank_is_at_most_r():
    model = lora.apply(build_model(tiny_config()), "lora", r=4)
    train_a_little(model)
    layer = model.base_model.model.model.layers[0].self_attn.v_proj
    delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight  # (128, 128)
    assert torch.linalg.matrix_rank(delta.detach()).item() == 4


# --------------------------------------------------------------------------------------------- which params train


def expected_trainable(method, config):
    layers = range(config.num_hidden_layers)
    names = set()
    if method == "full":
        return {n for n, _ in build_model(config).named_parameters()}
    for i in layers:
        for target in ATTENTION:
            for ab in ("lora_A", "lora_B"):
                names.add(f"model.layers.{i}.self_attn.{target}.{ab}.default.weight")
    if method in ("lora+", "lora+embed"):
        names.add("model.embed_tokens.weight")
    if method in ("lora+", "lora+norm"):
        names.add("model.norm.weight")
        for i in layers:
            names |= {f"model.layers.{i}.input_layernorm.weight", f"model.layers.{i}.post_attention_layernorm.weight"}
    return names


@pytest.mark.parametrize("method", lora.METHODS)
def test_each_method_trains_exactly_its_parameters(method):
    config = tiny_config()
    model = lora.apply(build_model(config), method)
    assert set(lora.trainable_names(model)) == expected_trainable(method, config)
    assert lora.method_of(model) == method
    head = [p for n, p in model.named_parameters() if n.endswith("lm_head.weight")]
    assert len(head) == 1 and head[0].requires_grad == (method == "full")


def test_lora_plus_training_moves_embeddings_and_norms_but_not_the_head():
    base = build_model(tiny_config())
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = train_a_little(lora.apply(base, "lora+"))
    after = {lora._logical_name(n): p for n, p in model.named_parameters() if ".original_module." not in n}
    assert not torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert not torch.equal(after["model.layers.2.input_layernorm.weight"], before["model.layers.2.input_layernorm.weight"])
    assert not torch.equal(after["model.norm.weight"], before["model.norm.weight"])
    assert torch.equal(after["lm_head.weight"], before["lm_head.weight"])
    assert torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])


# --------------------------------------------------------------------------------------------- report


def test_report_counts_each_parameter_once_where_peft_double_counts():
    config = tiny_config()
    model = lora.apply(build_model(config), "lora+")
    rows = {row["kind"]: row for row in lora.parameter_report(model)}
    # hand count: LoRA r*(d_in+d_out) on 4 projections x 4 layers; embeddings V*d; norms (2L+1)*d
    d, V, L, r = 128, 512, 4, 8
    assert rows["lora"]["trainable"] == L * 4 * r * (d + d) == 32_768
    assert rows["embedding"]["trainable"] == V * d == 65_536
    assert rows["norm"]["trainable"] == (2 * L + 1) * d == 1_152
    assert rows["head"] == dict(kind="head", parameters=V * d, trainable=0, percent=rows["head"]["percent"],
                                trainable_percent=0.0)
    total = sum(row["parameters"] for row in rows.values())
    assert total == count_parameters(build_model(config)) + 32_768 == 955_520
    trainable, peft_total = model.get_nb_trainable_parameters()
    assert trainable == sum(row["trainable"] for row in rows.values()) == 99_456
    assert peft_total == total + 65_536 + 1_152  # peft counts the modules_to_save originals again
    assert abs(sum(row["percent"] for row in rows.values()) - 100.0) < 1e-9
    frame = lora.report_frame(model)
    assert frame.loc["total", "parameters"] == total and frame.loc["total", "trainable"] == trainable


# Fig. 2c of the paper: Llama-2-7B shares (percent), with the number of decimals it prints
PAPER_FIG_2C = {"embedding": (1.94, 2), "head": (1.94, 2), "linear": (96.0, 0), "norm": (0.004, 3), "lora": (0.12, 2)}


def test_llama2_7b_report_reproduces_the_papers_shares():
    model = lora.apply(meta_model("Llama-2-7B"), "lora+")
    assert next(model.parameters()).device.type == "meta"
    shares = {row["kind"]: row["percent"] for row in lora.parameter_report(model)}
    for kind, (paper, decimals) in PAPER_FIG_2C.items():
        assert round(shares[kind], decimals) == paper, (kind, shares[kind])
        # 0.01 points wherever the paper prints 2+ decimals; "96%" is printed to whole points
        assert abs(shares[kind] - paper) <= max(0.01, 0.5 * 10**-decimals), (kind, shares[kind])
    assert shares["other"] == 0.0


def test_parameter_budget_on_the_tiny_model_matches_the_report():
    frame = lora.parameter_budget(["tiny"], methods=lora.METHODS)
    by_method = frame.set_index("method")
    assert (by_method["parameters"] == 922_752).all()
    assert by_method.loc["full", "trainable"] == 922_752
    assert by_method.loc["lora", "trainable"] == 32_768
    assert by_method.loc["lora+", "trainable"] == 99_456
    assert by_method.loc["lora+embed", "trainable"] == 32_768 + 65_536
    assert by_method.loc["lora+norm", "trainable"] == 32_768 + 1_152


# --------------------------------------------------------------------------------------------- save / load / merge


@pytest.mark.parametrize("method", lora.METHODS)
def test_save_then_load_on_a_fresh_base_gives_identical_logits(tmp_path, method):
    config = extended_config()
    trained = train_a_little(lora.apply(build_model(config, seed=0), method))
    ids = tokens()
    expected = logits(trained, ids)
    assert not torch.equal(expected, logits(build_model(config, seed=0), ids))  # training changed something
    lora.save(trained, tmp_path / "run")
    record = json.loads((tmp_path / "run" / lora.RUN_FILE).read_text())
    assert record["method"] == method and record["rope_parameters"]["factor"] == 4.0
    loaded = lora.load(build_model(config, seed=0), tmp_path / "run")
    torch.testing.assert_close(logits(loaded, ids), expected, rtol=0, atol=0)


def test_hand_unfrozen_embeddings_are_lost_by_peft_save_but_kept_by_ours(tmp_path):
    """The official code's pitfall, reproduced: requires_grad=True by hand is not saved by peft."""
    from peft import LoraConfig, PeftModel, get_peft_model

    config = tiny_config()
    by_hand = get_peft_model(build_model(config), LoraConfig(r=8, lora_alpha=16, target_modules=list(ATTENTION)))
    for name, param in by_hand.named_parameters():
        if "embed_tokens" in name or "norm" in name:
            param.requires_grad_(True)
    train_a_little(by_hand)
    by_hand.save_pretrained(tmp_path / "by_hand")
    reloaded = PeftModel.from_pretrained(build_model(config), tmp_path / "by_hand")
    ids = tokens()
    assert (logits(reloaded, ids) - logits(by_hand, ids)).abs().max() > 1e-3  # embeddings/norms were lost

    ours = train_a_little(lora.apply(build_model(config), "lora+"))
    lora.save(ours, tmp_path / "ours")
    torch.testing.assert_close(logits(lora.load(build_model(config), tmp_path / "ours"), ids), logits(ours, ids),
                               rtol=0, atol=0)


@pytest.mark.parametrize("method", ["lora", "lora+"])
def test_merged_model_equals_unmerged_and_keeps_rope_parameters(tmp_path, method):
    config = extended_config()
    model = train_a_little(lora.apply(build_model(config), method))
    ids = tokens(length=40)
    unmerged = logits(model, ids)
    merged = lora.merge(model)
    assert type(merged) is LlamaForCausalLM
    assert not any("lora" in n or "modules_to_save" in n or "original_module" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, ids), unmerged, rtol=1e-5, atol=1e-5)

    merged.save_pretrained(tmp_path / "merged")
    saved = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert saved["rope_parameters"]["rope_type"] == "linear" and saved["rope_parameters"]["factor"] == 4.0
    assert saved["max_position_embeddings"] == 1024
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path / "merged")
    assert reloaded.config.rope_parameters == config.rope_parameters
    torch.testing.assert_close(logits(reloaded, ids), unmerged, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------- atomic save


def test_save_is_atomic_when_the_write_fails(tmp_path):
    model = lora.apply(build_model(tiny_config()), "lora+")

    def failing_save(directory, **kwargs):  # writes half an adapter, then the disk "fills up"
        (directory / "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError("No space left on device")

    model.save_pretrained = failing_save
    with pytest.raises(OSError, match="No space"):
        lora.save(model, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # no run directory, no temporary leftovers


def test_failed_resave_keeps_the_previous_save(tmp_path):
    model = train_a_little(lora.apply(build_model(tiny_config()), "lora+"))
    lora.save(model, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}

    def failing_save(directory, **kwargs):
        (directory / "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError("interrupted")

    model.save_pretrained = failing_save
    with pytest.raises(OSError):
        lora.save(model, tmp_path / "run")
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_save_replaces_the_same_run_but_refuses_a_different_one(tmp_path):
    config = tiny_config()
    first = lora.apply(build_model(config), "lora+")
    lora.save(first, tmp_path / "run")
    later = train_a_little(first)
    lora.save(later, tmp_path / "run")  # a later checkpoint of the same run: replaced
    ids = tokens()
    torch.testing.assert_close(logits(lora.load(build_model(config), tmp_path / "run"), ids), logits(later, ids),
                               rtol=0, atol=0)
    other = lora.apply(build_model(config), "lora")
    with pytest.raises(ValueError, match=r"different run \(method 'lora\+'\).*overwrite=True"):
        lora.save(other, tmp_path / "run")
    lora.save(other, tmp_path / "run", overwrite=True)
    assert json.loads((tmp_path / "run" / lora.RUN_FILE).read_text())["method"] == "lora"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds files of something else"):
        lora.save(other, tmp_path / "notes")


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="qlora"), r"method='qlora' is not known; choose one of full, lora, lora\+"),
        (dict(method="lora", targets=("q_proj", "query_key_value")), r"targets \['query_key_value'\] are not"),
        (dict(method="lora", targets=("lm_head_typo",)), r"its linear layers are \["),
        (dict(method="lora", r=0), r"r=0: the LoRA rank must be an integer >= 1"),
        (dict(method="lora+", r=2.5), r"r=2.5"),
        (dict(method="lora", alpha=0), r"alpha=0"),
        (dict(method="lora", dropout=1.0), r"dropout=1.0"),
        (dict(method="lora", targets=()), r"targets is empty"),
    ],
)
def test_bad_input_raises_a_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lora.apply(build_model(tiny_config()), **kwargs)


def test_loading_onto_a_mismatched_base_is_refused(tmp_path):
    model = lora.apply(build_model(extended_config()), "lora+")
    lora.save(model, tmp_path / "run")
    with pytest.raises(ValueError, match=r"rope_parameters=.*extend_config"):
        lora.load(build_model(tiny_config()), tmp_path / "run")  # forgot to extend the base
    with pytest.raises(ValueError, match="num_hidden_layers"):
        lora.load(build_model(extend_config(tiny_config(num_hidden_layers=2), 1024)), tmp_path / "run")
    with pytest.raises(ValueError, match="not a longlora_kit save"):
        lora.load(build_model(tiny_config()), tmp_path / "nothing")
    with pytest.raises(ValueError, match="already carries a peft adapter"):
        lora.apply(model, "lora")


def test_loading_a_damaged_save_is_a_clear_error(tmp_path):
    import shutil

    config = tiny_config()
    lora.save(lora.apply(build_model(config), "lora+"), tmp_path / "good")

    def damaged(name, edit):
        folder = tmp_path / name
        shutil.copytree(tmp_path / "good", folder)
        edit(folder)
        return folder

    def edit_rank(folder, file, r):
        record = json.loads((folder / file).read_text())
        (record["lora"] if file == lora.RUN_FILE else record)["r"] = r
        (folder / file).write_text(json.dumps(record))

    cases = {  # today's messages were "Repo id must be a string", a JSONDecodeError, a size-mismatch traceback
        "no_weights": (lambda f: (f / "adapter_model.safetensors").unlink(),
                       r"incomplete save .*missing \['adapter_model.safetensors'\].*re-save"),
        "garbage_run_file": (lambda f: (f / lora.RUN_FILE).write_text("{oops"), r"longlora_run.json is damaged"),
        "edited_rank": (lambda f: edit_rank(f, lora.RUN_FILE, 16), r"disagrees with itself on the LoRA rank"),
        "edited_both_ranks": (lambda f: (edit_rank(f, lora.RUN_FILE, 16), edit_rank(f, "adapter_config.json", 16)),
                              r"does not load onto base_model .*re-save"),
    }
    for name, (edit, match) in cases.items():
        with pytest.raises(ValueError, match=match):
            lora.load(build_model(config), damaged(name, edit))
    assert lora.method_of(lora.load(build_model(config), tmp_path / "good")) == "lora+"


def test_save_finishes_a_swap_a_kill_interrupted(tmp_path):
    from longlora_kit.runs import atomic

    model = lora.apply(build_model(tiny_config()), "lora+")
    lora.save(model, tmp_path / "run")
    (tmp_path / "run").rename(tmp_path / ".run.old-0a1b2c3d")  # killed between the two renames of a re-save
    (tmp_path / ".run.tmp-0a1b2c3d").mkdir()
    assert atomic.recover(tmp_path / "run") == "finished"
    lora.save(model, tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
