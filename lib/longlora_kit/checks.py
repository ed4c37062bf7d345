"""Claims a notebook makes, checked in the profiles where they are made.

A notebook states findings ("extrapolating to 4x hurts perplexity") that only hold for a real run
(the workshop and full profiles); the smoke profile trains for a few steps and claims nothing. Rather
than hide each check under ``if PROFILE != "smoke":``, a cell states it as a sentence:

>>> claim(2.4 > 1.5 * 1.2, "extrapolating to 4x hurts perplexity", profile="workshop")
✓ extrapolating to 4x hurts perplexity
True
>>> claim(False, "extrapolating to 4x hurts perplexity", profile="smoke")
· (not claimed in the smoke profile) extrapolating to 4x hurts perplexity: does not hold here
False

In a profile that makes the claim, a false condition fails exactly like ``assert``:

>>> claim(False, "a must beat b", profile="full")
Traceback (most recent call last):
...
AssertionError: a must beat b
"""

from __future__ import annotations

from .profile import current_profile

CLAIMED_IN = ("workshop", "full")  # the smoke profile only checks that every step runs


def claim(condition, message: str, profiles: tuple[str, ...] = CLAIMED_IN, profile: str | None = None) -> bool:
    """Assert ``condition`` when ``profile`` (default: the active one) is in ``profiles``; otherwise only
    report whether it holds. Prints the claim either way and returns ``bool(condition)``.

    ``profile`` names whose numbers are checked: notebook 05 passes the profile its loaded results were
    made with, so the committed full run is checked whatever profile the notebook itself runs in.
    """
    holds, profile = bool(condition), current_profile(profile)
    if profile in profiles:
        if not holds:  # raised, not `assert`: it must fire under `python -O` too
            raise AssertionError(message)
        print(f"✓ {message}")
    else:
        print(f"· (not claimed in the {profile} profile) {message}: {'holds' if holds else 'does not hold'} here")
    return holds
