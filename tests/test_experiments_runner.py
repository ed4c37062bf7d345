"""The runner protocol: functions are wrapped, runner classes instantiated, anything else refused."""

import pytest

from longlora_kit.experiments.claims import RunSpec
from longlora_kit.experiments.runner import FunctionRunner, Runner, as_runner
from longlora_kit.experiments.toy_runner import ToyRunner


def test_a_function_becomes_a_runner_that_shares_nothing():
    runner = as_runner(lambda spec, seed, context: {"ppl": float(seed)})
    assert isinstance(runner, FunctionRunner) and isinstance(runner, Runner)
    assert runner.run(RunSpec(), 2, None) == {"ppl": 2.0} and runner.share_key(RunSpec(), 2) is None
    assert runner.prepare(None) is None


def test_runner_objects_pass_through_and_classes_are_instantiated():
    toy = ToyRunner()
    assert as_runner(toy) is toy
    assert isinstance(as_runner(ToyRunner), ToyRunner)
    with pytest.raises(ValueError, match="neither a Runner"):
        as_runner(42)
