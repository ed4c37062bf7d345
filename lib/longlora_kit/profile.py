"""The one run-budget switch: ``LONGLORA_KIT_PROFILE``.

Every size and step count the kit chooses for you (model width, steps, sequence
lengths, number of seeds) is looked up here, so a notebook never carries a second
copy of those numbers.

=========  =====================================================================
profile    meaning
=========  =====================================================================
smoke      what the tests use: tiny sizes, seconds per notebook, claims nothing
workshop   the default for people: minutes on a laptop CPU
full       reproduction-grade: longer runs, more seeds
=========  =====================================================================

Example::

    >>> import os; os.environ["LONGLORA_KIT_PROFILE"] = "smoke"
    >>> current_profile()
    'smoke'
    >>> pick({"smoke": 10, "workshop": 200, "full": 1000})
    10
"""

from __future__ import annotations

import os
from typing import TypeVar

ENV_VAR = "LONGLORA_KIT_PROFILE"
PROFILES = ("smoke", "workshop", "full")
DEFAULT_PROFILE = "workshop"

T = TypeVar("T")


def current_profile(profile: str | None = None) -> str:
    """Return the active profile: ``profile`` if given, else ``$LONGLORA_KIT_PROFILE``, else 'workshop'."""
    name = profile if profile is not None else os.environ.get(ENV_VAR, DEFAULT_PROFILE)
    name = name.strip().lower()
    if name not in PROFILES:
        source = "profile" if profile is not None else ENV_VAR
        raise ValueError(f"{source}={name!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return name


def pick(by_profile: dict[str, T], profile: str | None = None) -> T:
    """Pick the entry of ``by_profile`` for the active profile.

    ``by_profile`` must name every profile, so that adding a setting can never
    silently fall back to another profile's value.
    """
    missing = [p for p in PROFILES if p not in by_profile]
    if missing:
        raise ValueError(f"by_profile is missing the profiles {missing}; give a value for each of {PROFILES}")
    return by_profile[current_profile(profile)]
