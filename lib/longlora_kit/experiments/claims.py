"""What an experiment is made of, and how a claim is decided: the shared types of ``experiments``.

This module sits at the bottom of the package's dependency graph: the paper's tables
(:mod:`.tables`), the cache, the execution, the report and the toy runner all import it, and it
imports none of them.

**One run** is a :class:`RunSpec` (what trains, how attention looks, what is measured) and a seed.
An :class:`Arm` is one condition of an experiment (a label, a spec, the paper's numbers); a
:class:`Claim` is an ordering the paper reports between two arms; an :class:`Experiment` holds both.

**Verdicts.** For each arm we report the mean and the sample standard deviation ``s`` over ``n``
seeds (:class:`Stats`). A claim compares arm ``a`` with arm ``b`` through the *gain* ``Δ`` (how much
better ``a`` is: ``mean_b − mean_a`` for perplexity, ``mean_a − mean_b`` for accuracy) and its
standard error ``SE = √(s_a²/n_a + s_b²/n_b)``. With ``k = 2`` (about a 95% interval) and a margin
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

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

K_SE = 2.0            # a claim must hold beyond k standard errors of the difference
CLOSE_MARGIN = 0.02   # "as good as" = within 2% of the reference's mean
VERDICTS = ("reproduced", "not reproduced", "undecided")
PASSKEY_MULTIPLES = (1, 2, 4)  # passkey prompts at 1×, 2×, 4× the base model's length

#: metric -> (what it is, higher is better)
METRICS = {
    "ppl": ("validation perplexity at the extended length, full attention at test", False),
    "ppl_sparse": ("validation perplexity with the training pattern kept at test", False),
    **{f"passkey@{m}x": (f"passkey accuracy at {m}× the original length", True) for m in PASSKEY_MULTIPLES},
}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better.

    >>> higher_is_better("ppl"), higher_is_better("passkey@4x")
    (False, True)
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not known; choose one of {', '.join(METRICS)}")
    return METRICS[metric][1]


@dataclass(frozen=True)
class RunSpec:
    """One toy-scale run: how the base model is extended and fine-tuned, and what is measured.

    Lengths are multiples of the base model's pre-training length ``L0`` (the profile's
    ``base_length``): the model's RoPE is interpolated to ``extension × L0`` (``rope_method``, factor
    ``extension``), fine-tuned at that length and evaluated there with full attention.

    >>> RunSpec(eval_sparse=True).metrics()
    ('ppl', 'ppl_sparse')
    """

    train: bool = True                # False: evaluate without fine-tuning (the passkey baselines)
    extension: int = 4                # target length = extension × L0; interpolation factor (1 = none)
    rope_method: str = "yarn"         # rope.extend_config method; see toy_runner for why not linear PI
    method: str = "lora+"             # lora.apply method: full / lora / lora+ / lora+embed / lora+norm
    lora_r: int = 8
    attention: str = "s2"            # attention in training: full / s2 / s2_paper (config.ATTENTIONS)
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
    """One of the paper's findings: its arms, the claims between them, and how both sides measured it."""

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


@dataclass(frozen=True)
class Stats:
    """Mean and sample standard deviation (ddof = 1) over seeds.

    >>> s = Stats.of([2.0, 2.2])
    >>> s.n, round(s.mean, 3), round(s.sd, 3)
    (2, 2.1, 0.141)
    """

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
