"""Verdicts: each claim kind is decided by the numbers and their spread, in the right direction."""

import math

import pytest

from longlora_kit.experiments.claims import CLOSE_MARGIN, Claim, RunSpec, Stats, higher_is_better, verdict


def claim(kind, metric="ppl", margin=CLOSE_MARGIN):
    return Claim(kind, ("A", metric), ("B", metric), f"A {kind} B", margin)


@pytest.mark.parametrize("a, b, outcome", [
    ([3.00, 3.01, 3.02], [3.50, 3.51, 3.52], "reproduced"),      # clearly lower perplexity
    ([3.00, 3.40, 3.20], [3.10, 3.50, 3.30], "not reproduced"),  # lower on average, within the noise
    ([3.50, 3.51, 3.52], [3.00, 3.01, 3.02], "not reproduced"),  # the opposite ordering
    ([3.0, 3.0, 3.0], [3.0, 3.0, 3.0], "not reproduced"),        # a tie is no win
])
def test_better(a, b, outcome):
    assert verdict(claim("better"), Stats.of(a), Stats.of(b))["outcome"] == outcome


def test_better_uses_two_standard_errors():
    # gain 0.1; sd 0.1 each, n = 3: SE = sqrt(2 * 0.01 / 3) = 0.0816; 2 SE = 0.163 > 0.1
    a, b = Stats.of([2.9, 3.0, 3.1]), Stats.of([3.0, 3.1, 3.2])
    v = verdict(claim("better"), a, b)
    assert math.isclose(v["se"], math.sqrt(2 * 0.01 / 3)) and math.isclose(v["gain"], 0.1)
    assert v["outcome"] == "not reproduced"
    assert verdict(claim("better"), a, b, k=1.0)["outcome"] == "reproduced"  # 1 SE = 0.082 < 0.1


@pytest.mark.parametrize("a, b, outcome", [
    ([3.00, 3.01, 3.02], [3.01, 3.02, 3.00], "reproduced"),      # same within 2%
    ([3.20, 3.21, 3.22], [3.00, 3.01, 3.02], "not reproduced"),  # 6.6% apart
    ([2.8, 3.2, 3.0], [3.0, 3.0, 3.0], "not reproduced"),        # equal means, too noisy to show closeness
])
def test_close(a, b, outcome):
    assert verdict(claim("close"), Stats.of(a), Stats.of(b))["outcome"] == outcome


@pytest.mark.parametrize("a, b, outcome", [
    ([3.30, 3.31, 3.32], [3.00, 3.01, 3.02], "reproduced"),      # a is worse: it does not beat b
    ([3.00, 3.01, 3.02], [3.01, 3.00, 3.02], "reproduced"),      # a ties b
    ([2.50, 2.51, 2.52], [3.00, 3.01, 3.02], "not reproduced"),  # a beats b by 17%
])
def test_not_better(a, b, outcome):
    assert verdict(claim("not_better"), Stats.of(a), Stats.of(b))["outcome"] == outcome


def test_accuracy_is_higher_is_better():
    high, low = Stats.of([0.9, 0.95, 1.0]), Stats.of([0.0, 0.05, 0.0])
    assert verdict(claim("better", "passkey@4x"), high, low)["outcome"] == "reproduced"
    assert verdict(claim("better", "passkey@4x"), low, high)["outcome"] == "not reproduced"
    assert verdict(claim("better", "ppl"), high, low)["outcome"] == "not reproduced"  # lower ppl wins


def test_one_seed_is_undecided_and_mixed_directions_are_refused():
    assert verdict(claim("better"), Stats.of([3.0]), Stats.of([4.0]))["outcome"] == "undecided"
    assert verdict(claim("better"), Stats.of([3.0, math.nan]), Stats.of([4.0, 4.1]))["outcome"] == "undecided"
    with pytest.raises(ValueError, match="opposite"):
        verdict(Claim("better", ("A", "ppl"), ("B", "passkey@4x"), "x"), Stats.of([1, 2]), Stats.of([1, 2]))
    with pytest.raises(ValueError, match="claim kind"):
        Claim("roughly", ("A", "ppl"), ("B", "ppl"), "x")
    with pytest.raises(ValueError, match="metric='bleu'"):
        higher_is_better("bleu")


def test_a_spec_lists_what_it_measures():
    assert RunSpec().metrics() == ("ppl",)
    assert RunSpec(eval_sparse=True, passkey=True).metrics() == (
        "ppl", "ppl_sparse", "passkey@1x", "passkey@2x", "passkey@4x")
