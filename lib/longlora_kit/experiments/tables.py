"""The paper's findings as data: Tables 1, 2, 6, 7, 8 (the leak) and the passkey figure, at toy scale.

LongLoRA's evidence is a handful of *orderings* on Llama-2 7B: S2-Attn trains as well as full
attention while short attention without the shift does not (Table 1); LoRA alone falls short of
full fine-tuning unless embeddings and norms train too (Table 2); S2 beats other sparse patterns
once full attention is used at test time (Table 6); a group of 1/4 of the sequence is enough
(Table 7); the wrap-around leak of the roll implementation changes nothing (Table 8); the extended
model finds a passkey far beyond the original window (Fig. 4). Each is an :class:`~.claims.Experiment`
here: its arms (with the paper's numbers) and its claims, re-asked on a tiny Llama extended 4×
(YaRN position interpolation: see :mod:`.toy_runner` for why not the paper's linear PI).

>>> [e.key for e in EXPERIMENTS]
['table1', 'table2', 'table6', 'table7', 'leak', 'passkey']
>>> select(["table2"])[0].arm("LoRA r=8").paper
{'ppl': 11.44}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .claims import PASSKEY_MULTIPLES, Arm, Claim, Experiment, RunSpec


def _full_ft(extension: int, **kw) -> RunSpec:
    return RunSpec(method="full", extension=extension, **kw)


FULL_ATTN = dict(attention="full")
NO_SHIFT = dict(attention="s2", attention_pattern="pattern1")
S2 = dict(attention="s2")


def _table1() -> Experiment:
    arms, claims = [], []
    paper = {2: (8.02, 8.29, 8.04), 4: (8.05, 8.83, 8.03)}  # 8192 and 16384 = 2× and 4× of 4096
    for ext in (2, 4):
        full, no_shift, s2 = f"full attention, {ext}×", f"no shift (pattern 1), {ext}×", f"S2-Attn, {ext}×"
        arms += [Arm(full, _full_ft(ext, **FULL_ATTN), {"ppl": paper[ext][0]}, baseline=full),
                 Arm(no_shift, _full_ft(ext, **NO_SHIFT), {"ppl": paper[ext][1]}, baseline=full),
                 Arm(s2, _full_ft(ext, **S2), {"ppl": paper[ext][2]}, baseline=full)]
        claims += [
            Claim("close", (s2, "ppl"), (full, "ppl"),
                  f"at {ext}×, S2-Attn trains as well as full attention (paper {paper[ext][2]} vs {paper[ext][0]})"),
            Claim("better", (s2, "ppl"), (no_shift, "ppl"),
                  f"at {ext}×, the shift matters: S2-Attn beats short attention without shift "
                  f"(paper {paper[ext][2]} vs {paper[ext][1]})"),
        ]
    return Experiment(
        key="table1", title="Table 1: S2-Attn vs full attention vs short attention without shift",
        paper_setting="Llama-2 7B (4k), full fine-tuning with PI to 8k / 16k / 32k, PG19 validation, full attention at test",
        our_setting="tiny Llama, full fine-tuning with YaRN to 2× and 4× its length, full attention at test",
        about="Short attention in training is only an approximation: without the shift, groups never exchange "
              "information and the model learns less that transfers to full attention. The half-group shift of "
              "S2-Attn lets information flow between neighbouring groups, and the fine-tuned model matches one "
              "trained with full attention.",
        metrics=("ppl",), arms=tuple(arms), claims=tuple(claims),
    )


def _table2() -> Experiment:
    lora8, lora_big, norm, embed, plus, full = ("LoRA r=8", "LoRA r=32", "LoRA + norm", "LoRA + embed",
                                                "LoRA+ (embed + norm)", "full fine-tuning")
    arms = (
        Arm(lora8, RunSpec(method="lora", lora_r=8, **S2), {"ppl": 11.44}, baseline=full),
        Arm(lora_big, RunSpec(method="lora", lora_r=32, **S2), {"ppl": 11.92}, baseline=full),
        Arm(norm, RunSpec(method="lora+norm", **S2), {"ppl": 10.49}, baseline=full),
        Arm(embed, RunSpec(method="lora+embed", **S2), {"ppl": 8.29}, baseline=full),
        Arm(plus, RunSpec(method="lora+", **S2), {"ppl": 8.12}, baseline=full),
        Arm(full, _full_ft(4, **S2), {"ppl": 8.08}, baseline=full),
    )
    claims = (
        Claim("better", (full, "ppl"), (lora8, "ppl"), "LoRA alone falls short of full fine-tuning (paper 11.44 vs 8.08)"),
        Claim("not_better", (lora_big, "ppl"), (lora8, "ppl"),
              "a larger rank does not help plain LoRA (paper r=32 11.92 vs r=8 11.44)"),
        Claim("better", (full, "ppl"), (lora_big, "ppl"), "even at r=32 LoRA stays behind full fine-tuning (paper 11.92 vs 8.08)"),
        Claim("better", (plus, "ppl"), (lora8, "ppl"), "trainable embeddings + norms close the gap: LoRA+ beats LoRA (paper 8.12 vs 11.44)"),
        Claim("close", (plus, "ppl"), (full, "ppl"), "LoRA+ is as good as full fine-tuning (paper 8.12 vs 8.08)"),
        Claim("better", (embed, "ppl"), (lora8, "ppl"), "trainable embeddings alone help (paper 8.29 vs 11.44)"),
        Claim("better", (norm, "ppl"), (lora8, "ppl"), "trainable norms alone help (paper 10.49 vs 11.44)"),
        Claim("better", (embed, "ppl"), (norm, "ppl"), "embeddings matter more than norms (paper 8.29 vs 10.49)"),
    )
    return Experiment(
        key="table2", title="Table 2: which parameters must train (LoRA vs LoRA+ vs full fine-tuning)",
        paper_setting="Llama-2 7B extended to 32k (8×) with S2-Attn, PG19 validation, full attention at test",
        our_setting="tiny Llama extended 4× with S2-Attn, full attention at test; r=32 is a quarter of the width "
                    "(the paper's r=32 is 1/128 of 4096)",
        about="Plain LoRA on q/k/v/o cannot move the model far enough for a 4× longer context, and a higher rank "
              "does not fix that; making the embeddings (and, less so, the norms) trainable does, at a small cost "
              "in parameters at 7B scale. In a tiny model the embeddings are a large share of all weights, so "
              "'LoRA + embed' is far less parameter-efficient here than in the paper.",
        metrics=("ppl",), arms=arms, claims=claims,
    )


def _table6() -> Experiment:
    paper = {  # (sparse at test, full at test), Llama-2 7B LoRA+ at 32k
        "s2": ("S2 across heads", 8.64, 8.12), "pattern1": ("pattern 1 only", 9.17, 8.39),
        "pattern2": ("pattern 2 only", 9.64, 9.81), "dilated": ("dilated", 8.75, 11.78),
        "block_sparse": ("block sparse", 11.49, 8.30), "stride_sparse": ("stride sparse", 32.81, 24.03),
    }
    s2 = paper["s2"][0]
    arms = tuple(Arm(label, RunSpec(method="lora+", attention="s2", attention_pattern=pattern, eval_sparse=True),
                     {"ppl_sparse": sparse, "ppl": full}, baseline=s2)
                 for pattern, (label, sparse, full) in paper.items())
    claims = [Claim("better", (s2, "ppl"), (label, "ppl"),
                    f"with full attention at test, S2 beats {label} (paper {paper['s2'][2]} vs {full})")
              for pattern, (label, _, full) in paper.items() if pattern != "s2"]
    claims += [
        Claim("better", (s2, "ppl"), (s2, "ppl_sparse"),
              "a model trained with S2 is better with full attention at test than with S2 kept (paper 8.12 vs 8.64)"),
        Claim("better", ("dilated", "ppl_sparse"), ("dilated", "ppl"),
              "dilated attention does not transfer to full attention (paper 8.75 sparse vs 11.78 full)"),
    ]
    return Experiment(
        key="table6", title="Table 6: attention patterns in training (subset)",
        paper_setting="Llama-2 7B, LoRA+ to 32k, PG19 validation; each model tested with its own sparse pattern and with full attention",
        our_setting="tiny Llama, LoRA+ to 4×; each model tested with its training pattern kept and with full attention",
        about="The paper keeps S2 because it is the pattern whose models work best with the full attention used at "
              "inference. Patterns that never look far (dilated, stride) can do well under their own mask yet "
              "transfer badly; sparse attention in training is only useful if test-time full attention still works.",
        metrics=("ppl_sparse", "ppl"), arms=arms, claims=tuple(claims),
    )


def _table7() -> Experiment:
    full, half, quarter, eighth = "full attention", "G = 1/2", "G = 1/4", "G = 1/8"
    arms = (
        Arm(full, _full_ft(4, **FULL_ATTN), {"ppl": 7.82}, baseline=full),
        Arm(half, _full_ft(4, attention="s2", group_size_ratio=0.5), {"ppl": 7.84}, baseline=full),
        Arm(quarter, _full_ft(4, **S2), {"ppl": 7.86}, baseline=full),
        Arm(eighth, _full_ft(4, attention="s2", group_size_ratio=0.125), {"ppl": 7.98}, baseline=full),
    )
    claims = (
        Claim("close", (half, "ppl"), (full, "ppl"), "groups of 1/2 are as good as full attention (paper 7.84 vs 7.82)"),
        Claim("close", (quarter, "ppl"), (full, "ppl"), "groups of 1/4 are as good as full attention (paper 7.86 vs 7.82)"),
        Claim("better", (quarter, "ppl"), (eighth, "ppl"), "groups of 1/8 are too small: worse than 1/4 (paper 7.98 vs 7.86)"),
    )
    return Experiment(
        key="table7", title="Table 7: S2-Attn group size",
        paper_setting="Llama-2 7B fine-tuned to 8k and 16k, PG19 validation (the 16k row is shown)",
        our_setting="tiny Llama, full fine-tuning to 4× (Table 1's setting, which shares its full-attention and "
                    "1/4 runs; the paper's 8k 'Full' value, 8.02, equals Table 1's)",
        about="Each token sees at most G tokens in training. Down to G = 1/4 of the sequence (the original context "
              "length at a 4× extension) nothing is lost; smaller groups start to cost perplexity.",
        metrics=("ppl",), arms=arms, claims=claims,
    )


def _leak() -> Experiment:
    full, free, roll = "full attention", "S2 leak-free (separate groups)", "S2 paper roll (wraps around)"
    arms = (
        Arm(full, _full_ft(2, **FULL_ATTN), {"ppl": 8.02}, baseline=full),
        Arm(free, _full_ft(2, **S2), {"ppl": 8.03}, baseline=full),
        Arm(roll, _full_ft(2, attention="s2_paper"), {"ppl": 8.04}, baseline=full),
    )
    claims = (
        Claim("close", (roll, "ppl"), (free, "ppl"), "the wrap-around leak changes nothing (paper 8.04 vs 8.03)"),
        Claim("close", (free, "ppl"), (full, "ppl"), "the leak-free S2 matches full attention (paper 8.03 vs 8.02)"),
    )
    return Experiment(
        key="leak", title="Table 8: the wrap-around leak of the roll implementation",
        paper_setting="Llama-2 7B, full fine-tuning to 8k, PG19 validation; 'Ours' (roll) vs 'V2' (separate groups)",
        our_setting="tiny Llama, full fine-tuning to 2× (Table 1's setting, sharing its full-attention and S2 runs)",
        about="Rolling the shifted heads lets the first G/2 tokens see the last G/2 in training (future tokens). "
              "Test-time attention is full and causal, so the leak cannot help at evaluation; the paper found no "
              "difference, and a leak-free implementation costs nothing.",
        metrics=("ppl",), arms=arms, claims=claims,
    )


def _passkey() -> Experiment:
    base, pi, yarn, longlora, full = ("base model (no interpolation)", "PI 4×, no training", "YaRN 4×, no training",
                                      "LongLoRA (LoRA+ S2, 4×)", "full-attention fine-tuning (4×)")
    arms = (
        Arm(base, RunSpec(train=False, extension=1, passkey=True)),
        Arm(pi, RunSpec(train=False, extension=4, rope_method="linear", passkey=True)),
        Arm(yarn, RunSpec(train=False, extension=4, passkey=True)),
        Arm(longlora, RunSpec(method="lora+", passkey=True, **S2)),
        Arm(full, _full_ft(4, passkey=True, **FULL_ATTN)),
    )
    claims = (
        Claim("better", (longlora, "passkey@4x"), (base, "passkey@4x"),
              "beyond the original window the base model fails and LongLoRA retrieves (Llama-2 7B collapses after 4k)"),
        Claim("better", (longlora, "passkey@4x"), (pi, "passkey@4x"),
              "PI alone, without fine-tuning, is not enough (Llama-2 7B with PI collapses after 4k)"),
        Claim("better", (longlora, "passkey@4x"), (yarn, "passkey@4x"),
              "nor is YaRN without fine-tuning, the interpolation our LongLoRA starts from (not in the paper)"),
    )
    return Experiment(
        key="passkey", title="Passkey retrieval (Fig. 4)",
        paper_setting="Llama-2 7B LongLoRA at 32k: accuracy holds to 33-34k; stock Llama-2 fails beyond 4k, even with PI "
                      "(10 trials per length; a figure, no table)",
        our_setting="tiny Llama: the pre-trained base, the base with PI or YaRN ×4 and no training, LongLoRA and full-attention "
                    "fine-tuning at 4×; prompts of 1×, 2×, 4× the original length",
        about="Perplexity averages over all tokens; the passkey asks one long-range question. A model fine-tuned at "
              "4× should answer it at 4×, the base model cannot see that far, and interpolation without training has "
              "positions the model never learned to use.",
        metrics=tuple(f"passkey@{m}x" for m in PASSKEY_MULTIPLES), arms=arms, claims=claims,
    )


EXPERIMENTS: tuple[Experiment, ...] = (_table1(), _table2(), _table6(), _table7(), _leak(), _passkey())
EXPERIMENT_KEYS = tuple(e.key for e in EXPERIMENTS)


def select(only: Iterable[str] | None = None, experiments: Sequence[Experiment] = EXPERIMENTS) -> list[Experiment]:
    """The experiments named in ``only`` (all when None), in the canonical order."""
    if not only:
        return list(experiments)
    only = list(only)
    known = [e.key for e in experiments]
    unknown = [k for k in only if k not in known]
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)}: no such experiment; choose from {', '.join(known)}")
    return [e for e in experiments if e.key in only]

