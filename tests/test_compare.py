"""The comparison harness: one row per method, on tiny budgets (a few optimizer steps)."""
import copy
import math

import pytest
import torch

from fmlab import compare, foundation, lora


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    model, tok = foundation.load_base_model("cpu")
    return model, tok, compare.general_reference(model, tok)


def test_headroom_gain():
    assert compare.headroom_gain(0.0, 1.0) == 1.0
    assert compare.headroom_gain(0.5, 0.75) == pytest.approx(0.5)
    assert compare.headroom_gain(0.5, 0.25) < 0                       # worse than before
    assert compare.headroom_gain(100.0, 10.0, lower_is_better=True) == pytest.approx(0.5)
    assert compare.headroom_gain(100.0, 1.0, lower_is_better=True) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="nothing left to gain"):
        compare.headroom_gain(1.0, 1.0)
    with pytest.raises(ValueError, match="perplexities"):
        compare.headroom_gain(0.5, 2.0, lower_is_better=True)


def test_full_fine_tuning_row(shipped):
    model, tok, base = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    row = compare.run(compare.FullFineTuning(), model, tok, base, steps=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the shipped model was trained"
    assert row.trainable == model.num_params() and row.trainable_pct == pytest.approx(100.0)
    assert row.steps == 2 and row.train_s > 0 and row.target == "sentiment accuracy"
    assert row.memory_batch == 16 and row.batch_size == compare.FullFineTuning().cfg.batch_size
    mem = row.memory
    assert mem.gradients == mem.weights > 0 and mem.optimizer >= 2 * mem.weights and mem.activations > 0
    assert not row.base_identical                                    # every weight moved
    assert row.perplexity_change == pytest.approx(row.perplexity / base.perplexity - 1)
    assert row.data.endswith("labelled examples")
    d = row.as_dict()
    assert d["memory_kib"] == pytest.approx((mem.total - mem.temporary) / 2**10)


def test_peft_rows_keep_the_base_weights(shipped):
    model, tok, base = shipped
    lo = compare.run(compare.Lora(), model, tok, base, steps=2)
    expected = lora.count_params(lora.apply(copy.deepcopy(model),
                                            lora.LoraConfig(rank=8, targets=lora.ATTENTION,
                                                            train_tokens=tuple(tok.encode("positive negative")))))
    assert lo.trainable == expected["trainable"] and lo.trainable_pct < 5
    assert lo.base_identical
    rf = compare.run(compare.Reft(), model, tok, base, steps=2)
    assert rf.base_identical and rf.trainable_pct < 1
    assert rf.perplexity == base.perplexity and rf.fact_recall == base.fact_recall   # general text: the base model
    assert rf.memory.gradients < 0.01 * lo.memory.weights


def test_continued_pretraining_is_lower_is_better(shipped):
    model, tok, base = shipped
    row = compare.run(compare.ContinuedPretraining(eval_windows=4), model, tok, base, steps=3)
    assert row.target == "station perplexity" and row.before > 10
    assert row.gain == pytest.approx((math.log(row.before) - math.log(row.after)) / math.log(row.before))
    assert "unlabelled" in row.data


def test_dpo_row_counts_the_reference_and_starts_at_a_tie(shipped):
    model, tok, base = shipped
    prefs = compare.collect_preferences(model, tok, per_prompt=1, test_samples=1, seed=0)
    assert len(prefs.pairs["chosen"]) > 0 and len(prefs.test_prompts) == 15
    row = compare.run(compare.Dpo(prefs), model, tok, base, steps=1)
    assert row.before == 0.5                                         # an untrained policy ties with itself
    assert row.memory.weights >= 2 * row.memory.gradients            # policy + frozen reference
    assert row.data == f"{len(prefs.pairs['chosen'])} preference pairs"


def test_bad_budget_names_the_fix(shipped):
    model, tok, base = shipped
    with pytest.raises(ValueError, match="steps must be >= 1"):
        compare.run(compare.FullFineTuning(), model, tok, base, steps=0)
