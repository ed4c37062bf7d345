"""The paper's tables as data: every experiment the issue names, claims that refer to measured arms."""

import pytest

from longlora_kit.experiments.tables import EXPERIMENTS, select


def test_experiments_cover_the_issue():
    keys = [e.key for e in EXPERIMENTS]
    assert keys == ["table1", "table2", "table6", "table7", "leak", "passkey"]
    table6 = select(["table6"])[0]
    assert {a.spec.attention_pattern for a in table6.arms} == {"s2", "pattern1", "pattern2", "dilated", "block_sparse",
                                                                "stride_sparse"}
    assert all(a.spec.eval_sparse for a in table6.arms) and table6.metrics == ("ppl_sparse", "ppl")
    table7 = select(["table7"])[0]
    assert sorted(a.spec.group_size_ratio for a in table7.arms if a.spec.attention != "full") == [0.125, 0.25, 0.5]
    table1 = select(["table1"])[0]
    assert {a.spec.extension for a in table1.arms} == {2, 4} and {a.spec.method for a in table1.arms} == {"full"}
    passkey = select(["passkey"])[0]
    assert [a.spec.train for a in passkey.arms] == [False, False, False, True, True]
    assert [a.spec.extension for a in passkey.arms] == [1, 4, 4, 4, 4]
    # one interpolation for every fine-tuned arm; linear PI only as a no-training baseline
    assert [a.spec.rope_method for a in passkey.arms] == ["yarn", "linear", "yarn", "yarn", "yarn"]
    assert {a.spec.rope_method for e in EXPERIMENTS for a in e.arms if a.spec.train} == {"yarn"}


def test_every_claim_refers_to_a_measured_arm_and_the_paper_numbers_are_stored():
    for experiment in EXPERIMENTS:
        labels = [a.label for a in experiment.arms]
        assert len(labels) == len(set(labels)), experiment.key
        for claim in experiment.claims:
            for label, metric in (claim.a, claim.b):
                assert label in labels and metric in experiment.metrics, (experiment.key, claim.text)
        if experiment.key != "passkey":  # the passkey result is a figure in the paper, no table
            assert all(a.paper for a in experiment.arms), experiment.key
    assert select(["table2"])[0].arm("LoRA r=8").paper["ppl"] == 11.44


def test_select_keeps_the_canonical_order_and_names_unknown_tables():
    assert [e.key for e in select(["leak", "table1"])] == ["table1", "leak"]
    with pytest.raises(ValueError, match="no such experiment.*table1"):
        select(["table3"])
    with pytest.raises(ValueError, match="no arm"):
        select(["table1"])[0].arm("nope")
