"""A fake runner for the experiments tests: a deterministic function of the spec and the seed.

No model trains in those tests; the toy runner itself is exercised by the smoke run of notebook 05.
"""

import hashlib
import json
from dataclasses import asdict

from longlora_kit.experiments import execute
from longlora_kit.experiments.claims import PASSKEY_MULTIPLES, RunSpec

SETTINGS = {"seeds": 3, "size": "fake"}
CODE = "test+0"
CALLS: list[tuple[RunSpec, int]] = []


def _offset(spec: RunSpec) -> float:
    """A stable pseudo-random offset per spec in [0, 1)."""
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).digest()
    return digest[0] / 256


def fake_runner(spec, seed, context):
    """Perplexity 3 + spec offset + a small seed wobble; passkey accuracies from the offset."""
    CALLS.append((spec, seed))
    ppl = 3.0 + _offset(spec) + 0.001 * seed
    metrics = {"ppl": ppl, "ppl_sparse": ppl + 0.1}
    for m in PASSKEY_MULTIPLES:
        metrics[f"passkey@{m}x"] = min(1.0, _offset(spec) * m / 4 + 0.01 * seed)
    return metrics


def run(tmp_path, **kw):
    """``run_experiments`` with the fake runner, fake settings and code, caching under ``tmp_path``."""
    kw = {"profile": "full", "runner": fake_runner, "cache_dir": tmp_path, "settings": SETTINGS, "code": CODE,
          "progress": False, **kw}
    return execute.run_experiments(**kw)
