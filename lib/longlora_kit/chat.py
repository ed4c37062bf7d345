"""Chat with a model about a long document: where an extended context pays off.

Inference is the half of LongLoRA that uses *full* attention: S2-Attn is a training trick, and the
fine-tuned weights answer with ordinary causal attention over the whole prompt. Generation here is
plain ``model.generate``: eval mode, SDPA, a KV cache (each new token attends to the cached keys of
everything before it, so one step costs O(L) instead of a full O(L^2) forward), greedy decoding.

The prompt is the model's chat template (when the tokenizer has one) applied to one user message
that holds the document and then the question; without a template, plain ``Question:/Answer:`` text.
The model's RoPE comes from its folder's ``config.json``, so a model saved after ``longlora-kit
extend`` answers with its extended positions; :func:`context_limit` reads how far that reaches and
a longer prompt is refused with the numbers (a model run past its context degrades silently).

    >>> from longlora_kit.real_model import fetch_smollm2
    >>> model, tokenizer = load_chat_model(fetch_smollm2())                           # doctest: +SKIP
    >>> answer(model, tokenizer, "What is the capital of France?", max_new_tokens=12)  # doctest: +SKIP
    'The capital of France is Paris.'

Command line: ``longlora-kit chat --model DIR [--file doc.txt] [--question "..."]`` (interactive
when no question is given; ``--model`` defaults to the fetched SmolLM2 folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from .config import attn_implementation


def context_limit(config) -> int:
    """How many positions (prompt + answer) the model's RoPE was set up for.

    ``max_position_embeddings``, except that dynamic NTK and YaRN-style configs that record
    ``original_max_position_embeddings`` reach ``original x factor``:

    >>> from transformers import LlamaConfig
    >>> context_limit(LlamaConfig(max_position_embeddings=8192))
    8192
    >>> context_limit(LlamaConfig(max_position_embeddings=8192,
    ...                           rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e5}))
    16384
    """
    params = dict(getattr(config, "rope_parameters", None) or {})
    limit = int(config.max_position_embeddings)
    factor = params.get("factor")
    if factor and "original_max_position_embeddings" in params:
        limit = max(limit, int(params["original_max_position_embeddings"] * factor))
    elif factor and params.get("rope_type") == "dynamic":  # max_position_embeddings is the trained length
        limit = max(limit, int(limit * factor))
    return limit


FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def passkey_document(tokenizer, n_tokens: int, key: str, depth: float = 0.5) -> str:
    """A haystack of about ``n_tokens`` tokens (the Position Interpolation paper's filler) with the pass
    key stated at ``depth`` (0 = first sentence, 1 = last): a long document to ask a question about."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth={depth} must lie in [0, 1]")
    per_filler = len(tokenizer(FILLER * 10, add_special_tokens=False)["input_ids"]) / 10  # in context
    repeats = max(1, int(n_tokens / per_filler))
    cut = int(repeats * depth)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
    return FILLER * cut + needle + FILLER * (repeats - cut)


def build_prompt(tokenizer, question: str, document: str | None = None, history=None) -> torch.Tensor:
    """The prompt's token ids, ``(1, L)``: chat template if the tokenizer has one, else plain text.

    ``history``: earlier turns as ``[{"role": "user"|"assistant", "content": ...}, ...]``; the document,
    if any, goes before the question of this turn.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    content = f"{document.strip()}\n\n{question.strip()}" if document else question.strip()
    if getattr(tokenizer, "chat_template", None):
        messages = [*(history or []), {"role": "user", "content": content}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    else:  # a base model: a plain-text pattern it can continue
        past = "".join(f"{m['role'].title()}: {m['content']}\n" for m in history or [])
        ids = tokenizer(f"{past}{content}\nAnswer:")["input_ids"]
    return torch.tensor([list(ids)])  # (1, L)


def check_fits(n_prompt: int, max_new_tokens: int, config) -> None:
    """Raise a ``ValueError`` with the numbers when prompt + answer exceed :func:`context_limit`."""
    limit = context_limit(config)
    if n_prompt + max_new_tokens > limit:
        raise ValueError(
            f"the prompt is {n_prompt} tokens and max_new_tokens={max_new_tokens}, but the model's context is "
            f"{limit} positions (rope_parameters={dict(config.rope_parameters or {})}); shorten the document "
            f"by at least {n_prompt + max_new_tokens - limit} tokens, or extend the model's context first "
            "(longlora-kit extend, or rope.extend_config for a zero-shot try)"
        )


@torch.no_grad()
def answer(model, tokenizer, question: str, document: str | None = None, max_new_tokens: int = 128,
           history=None, stream: bool = False) -> str:
    """Greedy answer of ``model`` to ``question`` (about ``document``), as text.

    Full causal attention with a KV cache, in eval mode (the model's training mode is restored).
    ``stream=True`` also prints the answer token by token as it is generated.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
    from transformers import TextStreamer

    input_ids = build_prompt(tokenizer, question, document, history)  # (1, L)
    check_fits(input_ids.shape[1], max_new_tokens, model.config)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # S2-Attn (if registered) falls back to full attention in eval mode
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    try:
        output = model.generate(
            input_ids.to(device), attention_mask=torch.ones_like(input_ids, device=device),
            max_new_tokens=max_new_tokens, do_sample=False, use_cache=True, streamer=streamer,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )  # (1, L + new)
    finally:
        model.train(was_training)
    return tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True).strip()


def load_chat_model(folder: str | Path, dtype=torch.float32, device=None):
    """``(model, tokenizer)`` from a ``save_pretrained`` folder, in eval mode with SDPA attention.

    The folder's ``config.json`` (with any extended ``rope_parameters``) is used as saved.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"model={str(folder)!r} holds no saved model (no config.json); run `longlora-kit fetch smollm2` "
            "or pass a folder written by save_pretrained"
        )
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attn_implementation("full"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


# ---------------------------------------------------------------------------------------------
# the interactive session (``longlora-kit chat``; its argparse is in ``cli/real_model.py``)


def default_model() -> Path:
    """The fetched SmolLM2 folder, or a ValueError saying how to get one."""
    from .real_model import is_fetched, smollm2_dir

    if not is_fetched():
        raise ValueError("no --model given and SmolLM2 is not fetched; run `longlora-kit fetch smollm2` or pass --model DIR")
    return smollm2_dir()


def remember(history: list[dict], question: str, reply: str, document: str | None = None) -> None:
    """Append one turn to ``history``; the document stays in the first user turn (as the model saw it)."""
    first = f"{document.strip()}\n\n{question.strip()}" if document and not history else question.strip()
    history += [{"role": "user", "content": first}, {"role": "assistant", "content": reply}]


def chat_session(model, tokenizer, document: str | None = None, max_new_tokens: int = 256) -> None:
    """Ask questions on stdin until an empty line or Ctrl-D; the document goes into the first turn."""
    history: list[dict] = []
    print("Ask a question (empty line or Ctrl-D to quit).", file=sys.stderr)
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if not question:
            break
        print("model> ", end="", flush=True)
        try:
            reply = answer(model, tokenizer, question, document if not history else None, max_new_tokens,
                           history=history, stream=True)
        except ValueError as err:  # too long: say so and keep the session
            print(f"\n[{err}]", file=sys.stderr)
            continue
        remember(history, question, reply, document)


def chat_box(model, tokenizer, document: str | None = None, max_new_tokens: int = 128):
    """A small chat box for a notebook (ipywidgets): a question field, an Ask button, the answers.

    Same :func:`answer` as the command line; the document (if any) goes into the first turn. Returns the
    widget; ``box.ask(question)`` asks from code (what a test or a notebook cell can run).
    """
    import ipywidgets as widgets

    history: list[dict] = []
    question = widgets.Text(placeholder="Ask a question about the document", layout=widgets.Layout(width="70%"))
    button = widgets.Button(description="Ask")
    log = widgets.Output(layout=widgets.Layout(border="1px solid #ccc", padding="4px"))

    def ask(text: str) -> str:
        try:
            reply = answer(model, tokenizer, text, document if not history else None, max_new_tokens, history=history)
        except ValueError as err:  # too long or empty: show it, keep the session
            reply = f"[{err}]"
        else:
            remember(history, text, reply, document)
        log.append_stdout(f"you> {text}\nmodel> {reply}\n")
        return reply

    def on_ask(_):
        if question.value.strip():
            ask(question.value)
            question.value = ""

    button.on_click(on_ask)
    box = widgets.VBox([widgets.HBox([question, button]), log])
    box.ask, box.history = ask, history
    return box

