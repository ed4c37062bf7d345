"""chat: answers from the real model (greedy, KV cache), the context check, the command line."""

import os

import pytest
from transformers import LlamaConfig

from longlora_kit import chat, cli, rope

SMOKE = os.environ.get("LONGLORA_KIT_PROFILE", "smoke") == "smoke"

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def passkey_document(tokenizer, n_tokens: int, key: str, depth: float = 0.5) -> str:
    """PI-paper style haystack of about ``n_tokens`` tokens with the pass key at ``depth``."""
    per_filler = len(tokenizer(FILLER * 10, add_special_tokens=False)["input_ids"]) / 10  # in context
    repeats = int(n_tokens / per_filler)
    cut = int(repeats * depth)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    return FILLER * cut + needle + FILLER * (repeats - cut)


def test_capital_of_france(smollm2):
    model, tokenizer = smollm2
    reply = chat.answer(model, tokenizer, "What is the capital of France?", max_new_tokens=12)
    assert "Paris" in reply, reply


def test_prompt_uses_the_chat_template(smollm2):
    _, tokenizer = smollm2
    text = tokenizer.decode(chat.build_prompt(tokenizer, "Hi?", document="A doc.")[0])
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert "A doc.\n\nHi?" in text


def test_a_prompt_longer_than_the_context_is_refused(smollm2):
    model, tokenizer = smollm2
    document = passkey_document(tokenizer, 8300, "12345")  # past SmolLM2's 8192 positions
    with pytest.raises(ValueError, match=r"the prompt is \d+ tokens .* context is 8192 positions.*shorten"):
        chat.answer(model, tokenizer, "What is the pass key?", document=document, max_new_tokens=8)


def test_context_limit_follows_the_rope_config():
    config = LlamaConfig(max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 1e5})
    assert chat.context_limit(config) == 8192
    assert chat.context_limit(rope.extend_config(config, 16384, "linear")) == 16384
    assert chat.context_limit(rope.extend_config(config, 16384, "yarn")) == 16384
    assert chat.context_limit(rope.extend_config(config, 16384, "dynamic")) == 16384


def test_cli_answers_one_question_and_exits(smollm2_folder, capsys):
    code = cli.main(["chat", "--model", str(smollm2_folder), "--question", "What is the capital of France?",
                     "--max-new-tokens", "12"])
    assert code == 0 and "Paris" in capsys.readouterr().out


def test_cli_names_a_missing_file(smollm2_folder, tmp_path, capsys):
    code = cli.main(["chat", "--model", str(smollm2_folder), "--file", str(tmp_path / "nope.txt"), "--question", "?"])
    assert code == 2 and "--file" in capsys.readouterr().err


# ~6k tokens of prefill: measured 71 s at OMP_NUM_THREADS=1 on a busy 2-core machine (> 20 s), so
# full and workshop profiles only.
@pytest.mark.skipif(SMOKE, reason="6k-token prefill, ~70 s on one core; runs when LONGLORA_KIT_PROFILE != smoke")
def test_passkey_in_a_6k_token_document(smollm2):
    model, tokenizer = smollm2
    document = passkey_document(tokenizer, 6000, "71432", depth=0.4)
    reply = chat.answer(model, tokenizer, "What is the pass key? Answer with the number only.",
                        document=document, max_new_tokens=12)
    assert "71432" in reply, reply
