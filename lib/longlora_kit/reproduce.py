"""The paper's findings at toy scale: experiments, a result cache, verdicts and a report.

LongLoRA's evidence is a handful of *orderings* on Llama-2 7B: S2-Attn trains as well as full
attention while short attention without the shift does not (Table 1); LoRA alone falls short of
full fine-tuning unless embeddings and norms train too (Table 2); S2 beats other sparse patterns
once full attention is used at test time (Table 6); a group of 1/4 of the sequence is enough
(Table 7); the wrap-around leak of the roll implementation changes nothing (Table 8); the extended
model finds a passkey far beyond the original window (Fig. 4). This module re-asks each question on
a tiny Llama extended 4× (YaRN position interpolation: see :mod:`.reproduce_runner` for why not
the paper's linear PI), with several seeds, and answers it from the numbers.

**One run** is a :class:`RunSpec` (what trains, how attention looks, what is measured) and a seed.
A *runner* turns it into metrics, ``runner(spec, seed, context) -> {"ppl": 3.41, ...}``; the real
one is :func:`longlora_kit.reproduce_runner.run`, tests pass a fake. Every result is stored as JSON
under ``cache_dir/<profile>/<key>.json`` with::

    key = sha256(spec, seed, profile settings, code version)[:16]

written atomically (a temporary file, then ``os.replace``), so a rerun is instant, an interrupted
run resumes where it stopped, and two experiments that need the same run (Table 1's S2 arm is
Table 7's ratio 1/4) train it once. The code version is the package version plus a hash of the
source files that compute the numbers (:data:`CODE_FILES` and the tokenizer); Python files count by
their syntax tree (:func:`code_fingerprint`), so a reworded docstring or comment keeps the cache.

**Verdicts.** For each arm we report the mean and the sample standard deviation ``s`` over ``n``
seeds. A claim compares arm ``a`` with arm ``b`` through the *gain* ``Δ`` (how much better ``a`` is:
``mean_b − mean_a`` for perplexity, ``mean_a − mean_b`` for accuracy) and its standard error
``SE = √(s_a²/n_a + s_b²/n_b)``. With ``k = 2`` (about a 95% interval) and a margin
``m = 2%`` of ``b``'s mean:

==============  =========================  ================================================
claim           paper says                 reproduced when
==============  =========================  ================================================
``better``      a beats b                  ``Δ > k·SE`` and ``Δ > 0``
``close``       a is as good as b          ``|Δ| + k·SE ≤ m·|mean_b|`` (the interval lies inside ±m)
``not_better``  a does not beat b          ``Δ + k·SE ≤ m·|mean_b|`` (no gain beyond m)
==============  =========================  ================================================

Anything else is "not reproduced" — including a difference too noisy to call, so a verdict of
"reproduced" always rests on numbers that separate (or agree) beyond the seed-to-seed spread. With
fewer than 2 seeds there is no spread and the verdict is "undecided".

>>> a, b = Stats.of([3.0, 3.1, 3.05]), Stats.of([3.5, 3.6, 3.55])
>>> verdict(Claim("better", ("A", "ppl"), ("B", "ppl"), "A beats B"), a, b)["outcome"]
'reproduced'
>>> verdict(Claim("close", ("A", "ppl"), ("B", "ppl"), "A is as good as B"), a, b)["outcome"]
'not reproduced'
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .profile import current_profile

K_SE = 2.0            # a claim must hold beyond k standard errors of the difference
CLOSE_MARGIN = 0.02   # "as good as" = within 2% of the reference's mean
VERDICTS = ("reproduced", "not reproduced", "undecided")

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parents[1]
DEFAULT_CACHE_DIR = REPO_DIR / "runs" / "reproduce-cache"
DEFAULT_REPORT = REPO_DIR / "docs" / "reproduction.md"
DEFAULT_RESULTS = REPO_DIR / "docs" / "reproduction.json"
#: Source files whose content decides the numbers (hashed into the code version; reproduce.py itself
#: is not: the report's wording may change without invalidating results).
CODE_FILES = ("reproduce_runner.py", "train.py", "evaluate.py", "data.py", "rope.py", "s2attn.py",
              "patterns.py", "lora.py", "models.py")


# ------------------------------------------------------------------------------------------ specs

@dataclass(frozen=True)
class RunSpec:
    """One toy-scale run: how the base model is extended and fine-tuned, and what is measured.

    Lengths are multiples of the base model's pre-training length ``L0`` (the profile's
    ``base_length``): the model's RoPE is interpolated to ``extension × L0`` (``rope_method``, factor
    ``extension``), fine-tuned at that length and evaluated there with full attention.
    """

    train: bool = True                # False: evaluate without fine-tuning (the passkey baselines)
    extension: int = 4                # target length = extension × L0; interpolation factor (1 = none)
    rope_method: str = "yarn"         # rope.extend_config method; see reproduce_runner for why not linear PI
    method: str = "lora+"             # lora.apply method: full / lora / lora+ / lora+embed / lora+norm
    lora_r: int = 8
    attention: str = "s2_attn"        # attention in training: sdpa (full) / s2_attn / s2_attn_paper
    attention_pattern: str = "s2"     # Table 6: s2 / pattern1 / pattern2 / dilated / block_sparse / stride_sparse
    group_size_ratio: float = 0.25    # S2 group G = ratio × length
    eval_sparse: bool = False         # also measure "ppl_sparse": the training pattern kept at test
    passkey: bool = False             # also measure passkey accuracy at 1×, 2×, 4× L0

    def metrics(self) -> tuple[str, ...]:
        """The metrics this run reports."""
        names = ["ppl"]
        if self.eval_sparse:
            names.append("ppl_sparse")
        if self.passkey:
            names += [f"passkey@{m}x" for m in PASSKEY_MULTIPLES]
        return tuple(names)


PASSKEY_MULTIPLES = (1, 2, 4)

#: metric -> (what it is, higher is better)
METRICS = {
    "ppl": ("validation perplexity at the extended length, full attention at test", False),
    "ppl_sparse": ("validation perplexity with the training pattern kept at test", False),
    **{f"passkey@{m}x": (f"passkey accuracy at {m}× the original length", True) for m in PASSKEY_MULTIPLES},
}


def higher_is_better(metric: str) -> bool:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not known; choose one of {', '.join(METRICS)}")
    return METRICS[metric][1]


@dataclass(frozen=True)
class Arm:
    """One condition of an experiment: a label, the run, the paper's numbers for it."""

    label: str
    spec: RunSpec
    paper: dict = field(default_factory=dict)   # metric -> the paper's value (absent = not published)
    baseline: str | None = None                 # arm whose mean this one is divided by in ratio columns


@dataclass(frozen=True)
class Claim:
    """An ordering the paper reports: ``a`` (arm label, metric) vs ``b``, of a kind in the table above."""

    kind: str
    a: tuple[str, str]
    b: tuple[str, str]
    text: str
    margin: float = CLOSE_MARGIN

    def __post_init__(self):
        if self.kind not in ("better", "close", "not_better"):
            raise ValueError(f"kind={self.kind!r} is not a claim kind; use 'better', 'close' or 'not_better'")


@dataclass(frozen=True)
class Experiment:
    key: str               # what --only takes
    title: str
    paper_setting: str     # how the paper measured it
    our_setting: str       # how we do, at toy scale
    about: str             # what the result means
    metrics: tuple[str, ...]
    arms: tuple[Arm, ...]
    claims: tuple[Claim, ...]

    def arm(self, label: str) -> Arm:
        for arm in self.arms:
            if arm.label == label:
                return arm
        raise ValueError(f"experiment {self.key} has no arm {label!r}; its arms are {[a.label for a in self.arms]}")


# ------------------------------------------------------------------------------------ experiments

def _full_ft(extension: int, **kw) -> RunSpec:
    return RunSpec(method="full", extension=extension, **kw)


FULL_ATTN = dict(attention="sdpa")
NO_SHIFT = dict(attention="s2_attn", attention_pattern="pattern1")
S2 = dict(attention="s2_attn")


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
    arms = tuple(Arm(label, RunSpec(method="lora+", attention="s2_attn", attention_pattern=pattern, eval_sparse=True),
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
        Arm(half, _full_ft(4, attention="s2_attn", group_size_ratio=0.5), {"ppl": 7.84}, baseline=full),
        Arm(quarter, _full_ft(4, **S2), {"ppl": 7.86}, baseline=full),
        Arm(eighth, _full_ft(4, attention="s2_attn", group_size_ratio=0.125), {"ppl": 7.98}, baseline=full),
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
        Arm(roll, _full_ft(2, attention="s2_attn_paper"), {"ppl": 8.04}, baseline=full),
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


# --------------------------------------------------------------------------------------- verdicts

@dataclass(frozen=True)
class Stats:
    """Mean and sample standard deviation (ddof = 1) over seeds."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        return cls(tuple(float(v) for v in values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def sd(self) -> float:
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    def as_dict(self) -> dict:
        return {"values": list(self.values), "n": self.n, "mean": self.mean, "sd": self.sd}


def verdict(claim: Claim, a: Stats, b: Stats, k: float = K_SE) -> dict:
    """Decide ``claim`` from the seeds of its two sides (the rule is in the module docstring).

    Returns ``{"outcome", "gain", "se", "threshold", "explanation"}``; ``gain > 0`` means ``a`` is
    better than ``b`` (lower perplexity, higher accuracy).

    >>> v = verdict(Claim("close", ("A", "ppl"), ("B", "ppl"), "A ≈ B"), Stats.of([3.0, 3.01, 3.02]),
    ...             Stats.of([3.01, 3.0, 3.02]))
    >>> v["outcome"], round(v["gain"], 3)
    ('reproduced', 0.0)
    """
    higher = higher_is_better(claim.a[1])
    if higher != higher_is_better(claim.b[1]):
        raise ValueError(f"claim {claim.text!r} compares {claim.a[1]} with {claim.b[1]}, which point opposite ways")
    usable = a.n >= 2 and b.n >= 2 and all(math.isfinite(x) for x in (*a.values, *b.values))
    if not usable:
        return {"outcome": "undecided", "gain": math.nan, "se": math.nan, "threshold": math.nan,
                "explanation": f"needs at least 2 finite seeds per side (has {a.n} and {b.n})"}
    gain = a.mean - b.mean if higher else b.mean - a.mean
    se = math.sqrt(a.sd**2 / a.n + b.sd**2 / b.n)
    band = claim.margin * abs(b.mean)
    if claim.kind == "better":
        ok, threshold = gain > k * se and gain > 0, k * se
        rule = f"gain {gain:+.4g} {'>' if ok else '≤'} {k:g}·SE = {k * se:.4g}"
    elif claim.kind == "close":
        ok, threshold = abs(gain) + k * se <= band, band
        rule = f"|gain| + {k:g}·SE = {abs(gain) + k * se:.4g} {'≤' if ok else '>'} {claim.margin:.0%} of b = {band:.4g}"
    else:  # not_better
        ok, threshold = gain + k * se <= band, band
        rule = f"gain + {k:g}·SE = {gain + k * se:.4g} {'≤' if ok else '>'} {claim.margin:.0%} of b = {band:.4g}"
    return {"outcome": "reproduced" if ok else "not reproduced", "gain": gain, "se": se, "threshold": threshold,
            "explanation": rule}


# ------------------------------------------------------------------------------------------ cache

def code_version(files: Sequence[str] = CODE_FILES) -> str:
    """``<package version>+<hash of the files that compute the numbers>`` (missing files count too).

    Python files are hashed by :func:`code_fingerprint`, so rewording a docstring or a comment keeps
    the cache (a full run is 25 minutes); any change to the code itself invalidates it.
    """
    from . import __version__
    from .data import DEFAULT_TOKENIZER_DIR

    digest = hashlib.sha256()
    paths = [PACKAGE_DIR / name for name in files] + [Path(DEFAULT_TOKENIZER_DIR) / "tokenizer.json"]
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        if not path.is_file():
            digest.update(b"<missing>")
        elif path.suffix == ".py":
            digest.update(code_fingerprint(path.read_text()).encode())
        else:
            digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def code_fingerprint(source: str) -> str:
    r"""The syntax tree of Python ``source`` without comments, docstrings or layout.

    >>> documented = 'def f(x):\n    "Doubles x."\n    return 2 * x  # why\n'
    >>> code_fingerprint(documented) == code_fingerprint("def f(x):\n    return 2 * x\n")
    True
    >>> code_fingerprint(documented) == code_fingerprint("def f(x):\n    return 3 * x\n")
    False
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def run_key(spec: RunSpec, seed: int, settings: dict, code: str) -> str:
    """The cache key of one run: a hash of everything that decides its numbers."""
    payload = {"spec": asdict(spec), "seed": seed, "settings": _key_settings(settings), "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _key_settings(settings: dict) -> dict:
    # the number of seeds decides how many runs there are, not what one run computes
    return {k: v for k, v in settings.items() if k != "seeds"}


def write_json_atomic(path: Path, obj) -> Path:
    """Write JSON to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared and committed
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


@dataclass
class RunContext:
    """What a runner gets besides the spec and seed."""

    profile: str
    settings: dict
    cache_dir: Path        # cache_dir/<profile>: the runner may keep artifacts here (base model, runs)
    code: str
    progress: bool = True


Runner = Callable[[RunSpec, int, RunContext], dict]


def resolve_runner(runner: Runner | str | None) -> Runner:
    """``None`` = the toy runner; a ``"module:function"`` string is imported."""
    if runner is None:
        from .reproduce_runner import run

        return run
    if isinstance(runner, str):
        module, _, name = runner.partition(":")
        if not name:
            raise ValueError(f"runner={runner!r} must look like 'package.module:function'")
        return getattr(importlib.import_module(module), name)
    return runner


def default_settings(profile: str) -> dict:
    from .reproduce_runner import settings_for

    return settings_for(profile)


def run_experiments(only: Iterable[str] | None = None, profile: str | None = None, runner: Runner | str | None = None,
                    cache_dir: str | Path = DEFAULT_CACHE_DIR, settings: dict | None = None, code: str | None = None,
                    progress: bool = True, jobs: int = 1, experiments: Sequence[Experiment] = EXPERIMENTS) -> dict:
    """Run (or load from the cache) every run the selected experiments need; return the results dict
    that :func:`write_report` renders and the notebook plots.

    ``settings`` (default: the runner's profile settings) must hold ``seeds``, the number of seeds.
    ``jobs > 1`` runs that many worker processes (``torch`` threads split between them). A runner may
    carry two optional attributes: ``prepare(context)``, called once before any run (the toy runner
    pre-trains its base model there), and ``share_key(spec, seed)``: runs with the same share key go
    to the same worker, in order (the toy runner: runs that share one fine-tuned model).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    profile = current_profile(profile)
    chosen = select(only, experiments)
    settings = dict(default_settings(profile) if settings is None else settings)
    n_seeds = settings.get("seeds")
    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"settings['seeds'] must be an int >= 1 (the number of seeds per arm), got {n_seeds!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1 (worker processes), got {jobs!r}")
    seeds = list(range(n_seeds))
    code = code_version() if code is None else code
    run = resolve_runner(runner)
    directory = Path(cache_dir) / profile
    context = RunContext(profile=profile, settings=settings, cache_dir=directory, code=code, progress=progress)

    wanted: dict[str, tuple[RunSpec, int, str]] = {}  # key -> (spec, seed, first label); shared runs once
    for experiment in chosen:
        for arm in experiment.arms:
            for seed in seeds:
                key = run_key(arm.spec, seed, settings, code)
                wanted.setdefault(key, (arm.spec, seed, f"{experiment.key}: {arm.label}"))
    records = {key: record for key in wanted if (record := _load_record(directory / f"{key}.json", key))}
    cached = len(records)
    pending = [(key, *job) for key, job in wanted.items() if key not in records]

    bar = tqdm(total=len(wanted), initial=cached, desc=f"reproduce ({profile})", unit="run", disable=not progress)
    if pending and hasattr(run, "prepare"):
        bar.set_postfix_str("preparing")
        run.prepare(context)  # before any worker starts, so it has every thread to itself
    if jobs == 1 or len(pending) <= 1:
        for key, spec, seed, label in pending:
            bar.set_postfix_str(f"{label} · seed {seed}")
            records[key] = _run_one(run, key, spec, seed, label, context)
            bar.update(1)
    else:
        records.update(_run_parallel(run, pending, context, jobs, bar))
    bar.close()

    return {
        "kit": "longlora-kit", "profile": profile, "claims": profile != "smoke",
        "date": _now(), "machine": machine(), "jobs": jobs, "seeds": seeds, "settings": settings, "code": code,
        "rule": {"k": K_SE, "close_margin": CLOSE_MARGIN},
        "runs": {"total": len(wanted), "ran": len(pending), "cached": cached},
        "seconds": {"invocation": time.perf_counter() - started,
                    "compute": sum(r["seconds"] for r in records.values())},
        "experiments": [_experiment_result(e, records, seeds, settings, code) for e in chosen],
    }


def _run_one(run: Runner, key: str, spec: RunSpec, seed: int, label: str, context: RunContext) -> dict:
    """Run one spec and store its record atomically under ``context.cache_dir/<key>.json``."""
    t0 = time.perf_counter()
    metrics = run(spec, seed, context)
    missing = [m for m in spec.metrics() if m not in metrics]
    if missing:
        raise ValueError(f"the runner returned no {missing} for {label} (seed {seed}); it returned {sorted(metrics)}")
    record = {"key": key, "label": label, "spec": asdict(spec), "seed": seed, "profile": context.profile,
              "settings": context.settings, "code": context.code, "metrics": {m: float(v) for m, v in metrics.items()},
              "seconds": time.perf_counter() - t0, "finished": _now()}
    write_json_atomic(context.cache_dir / f"{key}.json", record)
    return record


def _run_task(run: Runner, task: list, context: RunContext) -> list[dict]:
    return [_run_one(run, key, spec, seed, label, context) for key, spec, seed, label in task]


def _threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def group_tasks(pending: list, share_key: Callable | None = None) -> list[list]:
    """Split pending runs ``(key, spec, seed, label)`` into tasks for the workers: runs with one
    ``share_key(spec, seed)`` form one task (kept in order), every other run is a task of its own."""
    tasks: dict = {}
    for job in pending:
        tasks.setdefault(share_key(job[1], job[2]) if share_key else job[0], []).append(job)
    return list(tasks.values())


def _run_parallel(run: Runner, pending: list, context: RunContext, jobs: int, bar) -> dict[str, dict]:
    """``pending`` runs on ``jobs`` spawned processes; runs with one share key stay together, in order."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    tasks = group_tasks(pending, getattr(run, "share_key", None))
    threads = _threads_per_job(jobs)
    records: dict[str, dict] = {}
    context = RunContext(**{**asdict(context), "progress": False})  # one bar: ours
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(_run_task, run, task, context) for task in tasks}
        try:
            while futures:
                done, futures = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    for record in future.result():  # re-raises a worker's error; finished runs stay cached
                        records[record["key"]] = record
                        bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return records


def _load_record(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:  # cannot happen with atomic writes, but a hand-edited file might
        return None
    return record if record.get("key") == key else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _experiment_result(experiment: Experiment, records: dict, seeds: list[int], settings: dict, code: str) -> dict:
    stats: dict[tuple[str, str], Stats] = {}
    arms = []
    for arm in experiment.arms:
        runs = [records[run_key(arm.spec, seed, settings, code)] for seed in seeds]
        ours = {}
        for metric in experiment.metrics:
            s = Stats.of(r["metrics"][metric] for r in runs)
            stats[(arm.label, metric)] = s
            ours[metric] = s.as_dict()
        arms.append({"label": arm.label, "spec": asdict(arm.spec), "paper": dict(arm.paper), "baseline": arm.baseline,
                     "ours": ours, "seconds": sum(r["seconds"] for r in runs)})
    claims = []
    for claim in experiment.claims:
        for side in (claim.a, claim.b):
            if side not in stats:
                raise ValueError(f"claim {claim.text!r} refers to {side}, which experiment {experiment.key} does not measure")
        claims.append({"kind": claim.kind, "a": list(claim.a), "b": list(claim.b), "text": claim.text,
                       "margin": claim.margin, **verdict(claim, stats[claim.a], stats[claim.b])})
    return {"key": experiment.key, "title": experiment.title, "paper_setting": experiment.paper_setting,
            "our_setting": experiment.our_setting, "about": experiment.about, "metrics": list(experiment.metrics),
            "arms": arms, "claims": claims}


def machine() -> dict:
    """Where the numbers were made: CPU model, cores, torch threads, versions."""
    import torch

    from .utils import cpu_name, environment_report

    cpu = cpu_name()
    env = environment_report()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": env["device"],
            "gpu": env["gpu"], "python": env["python"], "torch": env["torch"], "transformers": env["transformers"],
            "peft": env["peft"], "platform": env["platform"]}


# ----------------------------------------------------------------------------------------- report

def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _mean_sd(d: dict, digits: int = 3) -> str:
    if d["n"] >= 2 and math.isfinite(d["sd"]):
        return f"{d['mean']:.{digits}f} ± {d['sd']:.{digits}f}"
    return _fmt(d["mean"], digits)


def experiment_table(experiment: dict) -> str:
    """One experiment as a markdown table: per metric, ours (mean ± sd), ours ÷ baseline, paper, paper ÷ baseline."""
    by_label = {a["label"]: a for a in experiment["arms"]}
    ratio = any(a["baseline"] for a in experiment["arms"]) and not any(higher_is_better(m) for m in experiment["metrics"])
    header, rule = ["arm"], ["---"]
    for metric in experiment["metrics"]:
        cols = [f"{metric} ours", f"{metric} paper"]
        if ratio:
            cols = [f"{metric} ours", "ours ÷ baseline", f"{metric} paper", "paper ÷ baseline"]
        header += cols
        rule += ["---:"] * len(cols)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    digits = 2 if any(higher_is_better(m) for m in experiment["metrics"]) else 3
    for arm in experiment["arms"]:
        cells = [arm["label"]]
        base = by_label.get(arm["baseline"]) if arm["baseline"] else None
        for metric in experiment["metrics"]:
            ours, paper = arm["ours"][metric], arm["paper"].get(metric)
            cells.append(_mean_sd(ours, digits))
            if ratio:
                ours_ratio = ours["mean"] / base["ours"][metric]["mean"] if base else None
                paper_base = base["paper"].get(metric) if base else None
                cells.append(_fmt(ours_ratio))
                cells.append(_fmt(paper, 2))
                cells.append(_fmt(paper / paper_base if paper is not None and paper_base else None))
            else:
                cells.append(_fmt(paper, 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_lines(experiment: dict) -> list[str]:
    """One line per claim: outcome, the claim, our means, the rule's numbers."""
    by_label = {a["label"]: a for a in experiment["arms"]}
    lines = []
    for c in experiment["claims"]:
        a = by_label[c["a"][0]]["ours"][c["a"][1]]
        b = by_label[c["b"][0]]["ours"][c["b"][1]]
        side = lambda s, d: f"{s[0]} {s[1]} {_mean_sd(d)}"
        lines.append(f"- **{c['outcome']}**: {c['text']}. Ours: {side(c['a'], a)} vs {side(c['b'], b)}; "
                     f"{c['explanation']}.")
    return lines


def tally(results: dict) -> dict[str, int]:
    """How many claims came out each way."""
    counts = dict.fromkeys(VERDICTS, 0)
    for experiment in results["experiments"]:
        for claim in experiment["claims"]:
            counts[claim["outcome"]] += 1
    return counts


def render_report(results: dict) -> str:
    """The markdown report of a results dict (what ``docs/reproduction.md`` holds)."""
    m, s = results["machine"], results["settings"]
    counts = tally(results)
    out = ["# LongLoRA's findings at toy scale", "",
           "<!-- generated by `longlora-kit reproduce`; do not edit by hand -->", ""]
    if not results["claims"]:
        out += ["> **Smoke profile: this report only checks that the machinery runs end to end. Its models are "
                "trained for a few steps; the numbers and verdicts below claim nothing.**", ""]
    out += [
        f"- **Date:** {results['date']}",
        f"- **Profile:** `{results['profile']}`, {len(results['seeds'])} seeds per arm ({', '.join(map(str, results['seeds']))})",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, device {m['device']}"
        f" (GPU: {m['gpu']}); Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, peft {m['peft']}",
        f"- **Run time:** {results['seconds']['compute'] / 60:.1f} min of compute over {results['runs']['total']} runs "
        f"({results['runs']['ran']} run now, {results['runs']['cached']} from the cache; this invocation took "
        f"{results['seconds']['invocation'] / 60:.1f} min)",
        f"- **Code version:** `{results['code']}`",
        f"- **Verdicts:** {counts['reproduced']} reproduced, {counts['not reproduced']} not reproduced"
        + (f", {counts['undecided']} undecided" if counts["undecided"] else ""),
        "",
        "## How to read this",
        "",
        "Each arm is fine-tuned and evaluated once per seed; cells show mean ± sample standard deviation over "
        "the seeds. `ppl` is validation perplexity at the extended length with full attention at test (as in the "
        "paper), `ppl_sparse` keeps the training pattern at test, `passkey@Nx` is exact-match passkey accuracy at "
        "N× the original length. The paper's absolute numbers (Llama-2 7B on PG19) are not comparable with ours "
        "(a tiny Llama on the kit's synthetic corpus); the *orderings* are, and the ratio columns put both on one "
        "scale.",
        "",
        f"A claim compares arm a with arm b by the gain Δ (how much better a is) and its standard error "
        f"SE = √(s_a²/n_a + s_b²/n_b). **better**: reproduced when Δ > {K_SE:g}·SE and Δ > 0. **close** (as good "
        f"as): reproduced when |Δ| + {K_SE:g}·SE ≤ {CLOSE_MARGIN:.0%} of b's mean. **not_better**: reproduced "
        f"when Δ + {K_SE:g}·SE ≤ {CLOSE_MARGIN:.0%} of b's mean. A difference too noisy to call is *not reproduced*.",
        "",
        "## Setting",
        "",
        "| setting | value |",
        "| --- | --- |",
        *[f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in s.items()],
        "",
    ]
    for experiment in results["experiments"]:
        out += [f"## {experiment['title']}", "",
                f"*Paper:* {experiment['paper_setting']}.  ", f"*Ours:* {experiment['our_setting']}.", "",
                experiment_table(experiment), "", *verdict_lines(experiment), "",
                f"{experiment['about']}", ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(results: dict, path: str | Path) -> tuple[Path, Path]:
    """Write the markdown report to ``path`` and the results beside it as JSON (same name, ``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path = write_json_atomic(path.with_suffix(".json"), results)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(render_report(results))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path, json_path


def load_results(path: str | Path = DEFAULT_RESULTS) -> dict:
    """Results written by :func:`write_report` (the ``.json`` beside the report)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results at {path}; produce them with `longlora-kit reproduce`")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------- figures

def figure(experiment: dict):
    """A plotly bar chart of one experiment: our means with ± sd error bars, the paper's values as
    diamonds. Perplexities are shown relative to each arm's baseline (so the paper's 7B numbers and
    ours share one axis); accuracies as they are."""
    import plotly.graph_objects as go

    by_label = {a["label"]: a for a in experiment["arms"]}
    relative = not any(higher_is_better(m) for m in experiment["metrics"])
    fig = go.Figure()
    for i, metric in enumerate(experiment["metrics"]):
        labels, ours, err, paper = [], [], [], []
        for arm in experiment["arms"]:
            d = arm["ours"][metric]
            scale, paper_scale = 1.0, 1.0
            if relative:
                base = by_label[arm["baseline"] or arm["label"]]
                scale = base["ours"][metric]["mean"]
                paper_scale = base["paper"].get(metric)
            labels.append(arm["label"])
            ours.append(d["mean"] / scale)
            err.append((d["sd"] / scale) if math.isfinite(d["sd"]) else 0.0)
            p = arm["paper"].get(metric)
            paper.append(p / paper_scale if p is not None and paper_scale else None)
        color = ("#4C78A8", "#F58518", "#54A24B")[i % 3]
        fig.add_trace(go.Bar(x=labels, y=ours, name=f"ours: {metric}", marker_color=color,
                             error_y=dict(type="data", array=err, visible=True), offsetgroup=str(i)))
        if any(p is not None for p in paper):
            fig.add_trace(go.Scatter(x=labels, y=paper, name=f"paper: {metric}", mode="markers", offsetgroup=str(i),
                                     marker=dict(symbol="diamond", size=11, color="black", line=dict(color=color, width=2))))
    ytitle = "perplexity ÷ baseline arm's (lower is better)" if relative else "accuracy (higher is better)"
    fig.update_layout(title=experiment["title"], barmode="group", yaxis_title=ytitle, height=420,
                      margin=dict(l=60, r=20, t=50, b=120), legend=dict(orientation="h", y=-0.35))
    if relative:
        fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    return fig


# --------------------------------------------------------------------------------------------- CLI

def default_report_path(profile: str, only: Sequence[str] | None, cache_dir: str | Path) -> Path:
    """``docs/reproduction.md`` for a complete full-profile run; otherwise beside the cache, so a smoke or
    partial run never overwrites the committed report."""
    if profile == "full" and not only:
        return DEFAULT_REPORT
    return Path(cache_dir) / profile / "reproduction.md"


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="reproduce the paper's key orderings at toy scale (Tables 1, 2, 6, 7, 8, passkey)",
        description="Fine-tune a tiny Llama extended 4x (YaRN) for every arm of the paper's key experiments, with "
        "several seeds, compare the orderings with the paper's and write a markdown report. Results are cached "
        "(JSON per run), so reruns are instant and an interrupted run resumes.",
    )
    p.add_argument("--profile", choices=("smoke", "workshop", "full"), default=None,
                   help="run budget (default: $LONGLORA_KIT_PROFILE or workshop); smoke checks the machinery only")
    p.add_argument("--only", nargs="+", action="extend", metavar="TABLE", choices=EXPERIMENT_KEYS,
                   help=f"run only these experiments: {', '.join(EXPERIMENT_KEYS)}")
    p.add_argument("--cache", default=str(DEFAULT_CACHE_DIR), help="result cache directory (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="report path (a .json of the results is written beside it; default: docs/reproduction.md "
                        "for a complete full-profile run, else CACHE/PROFILE/reproduction.md)")
    p.add_argument("--runner", default=None, help="advanced: 'module:function' to run one spec instead of the toy runner")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes, torch threads split between them (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    profile = current_profile(args.profile)
    results = run_experiments(only=args.only, profile=profile, runner=args.runner, cache_dir=args.cache,
                              progress=not args.no_progress, jobs=args.jobs)
    out = Path(args.out) if args.out else default_report_path(profile, args.only, args.cache)
    report, data = write_report(results, out)
    for experiment in results["experiments"]:
        print(f"{experiment['title']}")
        for c in experiment["claims"]:
            print(f"  {c['outcome']:>14}: {c['text']}")
    counts = tally(results)
    print(f"\n{counts['reproduced']} reproduced, {counts['not reproduced']} not reproduced, "
          f"{counts['undecided']} undecided ({results['runs']['ran']} runs now, {results['runs']['cached']} cached, "
          f"{results['seconds']['compute'] / 60:.1f} min of compute)")
    if not results["claims"]:
        print("smoke profile: the machinery ran; these numbers claim nothing")
    print(f"report: {report}\nresults: {data}")
    return 0
