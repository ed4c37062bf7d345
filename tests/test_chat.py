"""chat: answers from the real model (greedy, KV cache), the context check, the command line."""

import os

import pytest
from transformers import LlamaConfig

from longlora_kit import chat, cli, rope

SMOKE = os.environ.get("LONGLORA_KIT_PROFILE", "smoke") == "smoke"


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
    document = chat.passkey_document(tokenizer, 8300, "12345")  # past SmolLM2's 8192 positions
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
    document = chat.passkey_document(tokenizer, 6000, "71432", depth=0.4)
    reply = chat.answer(model, tokenizer, "What is the pass key? Answer with the number only.",
                        document=document, max_new_tokens=12)
    assert "71432" in reply, reply


def test_chat_box_answers_and_keeps_the_document_in_the_first_turn(smollm2):
    model, tokenizer = smollm2
    document = chat.passkey_document(tokenizer, 300, "40719")
    box = chat.chat_box(model, tokenizer, document, max_new_tokens=12)
    reply = box.ask("What is the pass key? Answer with the number only.")
    assert "40719" in reply, reply
    box.ask("Thank you.")
    assert [m["role"] for m in box.history] == ["user", "assistant", "user", "assistant"]
    assert box.history[0]["content"].startswith(document.strip()) and box.history[2]["content"] == "Thank you."
    assert "model> " in box.children[1].outputs[0]["text"]  # the conversation shows in the box
