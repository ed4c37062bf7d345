"""The runner protocol: what turns one :class:`~.claims.RunSpec` and a seed into metrics.

A runner has three methods. :func:`~.execute.run_experiments` calls ``prepare(context)`` once before
any run (the toy runner pre-trains its shared base model there, with every thread to itself), then
``run(spec, seed, context) -> {"ppl": 3.41, ...}`` per run; runs with one ``share_key(spec, seed)``
go to the same worker process, in order (the toy runner: runs that reuse one fine-tuned model).
``share_key`` returns None when a run shares nothing.

The real runner is :class:`~.toy_runner.ToyRunner`; a plain function ``f(spec, seed, context)`` (what
tests pass, or ``--runner module:function``) is wrapped in a :class:`FunctionRunner`.

>>> from .claims import RunSpec
>>> runner = as_runner(lambda spec, seed, context: {"ppl": 3.0 + seed})
>>> runner.run(RunSpec(), 1, None), runner.share_key(RunSpec(), 1)
({'ppl': 4.0}, None)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from .claims import RunSpec


@dataclass
class RunContext:
    """What a runner gets besides the spec and seed."""

    profile: str
    settings: dict
    cache_dir: Path        # cache_dir/<profile>: the runner may keep artifacts here (base model, runs)
    code: str
    progress: bool = True


@runtime_checkable
class Runner(Protocol):
    def prepare(self, context: RunContext) -> None: ...

    def run(self, spec: RunSpec, seed: int, context: RunContext) -> dict: ...

    def share_key(self, spec: RunSpec, seed: int) -> Hashable | None: ...


@dataclass(frozen=True)
class FunctionRunner:
    """A plain ``function(spec, seed, context) -> metrics`` as a :class:`Runner`: nothing to prepare,
    nothing shared."""

    function: Callable[[RunSpec, int, RunContext], dict]

    def prepare(self, context: RunContext) -> None:
        pass

    def run(self, spec: RunSpec, seed: int, context: RunContext) -> dict:
        return self.function(spec, seed, context)

    def share_key(self, spec: RunSpec, seed: int) -> None:
        return None


def as_runner(obj) -> Runner:
    """``obj`` itself when it is a :class:`Runner` (a Runner class is instantiated), a callable wrapped in a
    :class:`FunctionRunner`."""
    if isinstance(obj, type) and issubclass(obj, Runner):
        obj = obj()
    if isinstance(obj, Runner):
        return obj
    if callable(obj):
        return FunctionRunner(obj)
    raise ValueError(f"runner={obj!r} is neither a Runner (prepare / run / share_key) nor a function "
                     "(spec, seed, context) -> metrics")
