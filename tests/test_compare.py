"""The comparison harness (fmlab.compare): one row per method, on tiny budgets (a few optimizer steps).

Invariants that could fail: the shipped model is never trained; PEFT rows keep every base weight and train exactly
the adapter's parameters; general ability is measured on the model as deployed (LoRA's adapter on); every model a
method holds is counted, in models_held and in the weights' bytes; metric kinds are never mixed.
"""
import copy
import dataclasses

import pytest
import torch

from fmlab import compare, foundation, lora, reft
from fmlab.train import TrainConfig


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    model, tok = foundation.load_base_model("cpu")
    return model, tok, compare.general_reference(model, tok)


def _bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_full_fine_tuning_row(shipped):
    model, tok, base = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    row = compare.run(compare.FullFineTuning(), model, tok, base, steps=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the shipped model was trained"
    assert row.trainable == model.num_params() and row.trainable_pct == pytest.approx(100.0)
    assert row.steps == 3 and row.batch_size == compare.FullFineTuning().cfg.batch_size
    assert row.step_s == pytest.approx(row.train_s / 3) and row.models_held == 1
    assert row.metric == "accuracy" and 0 <= row.before <= 1 and 0 <= row.after <= 1
    mem = row.memory
    assert mem.gradients == mem.weights > 0 and mem.optimizer >= 2 * mem.weights and mem.activations > 0
    assert not row.base_identical                                    # every weight moved
    assert row.perplexity != base.perplexity                         # ... so general text reads differently
    assert row.perplexity_change == pytest.approx(row.perplexity / base.perplexity - 1)
    assert row.recall_drop == pytest.approx(base.fact_recall - row.fact_recall)
    assert row.as_dict()["memory_kib"] == pytest.approx((mem.total - mem.temporary) / 2**10)


def test_lora_row_trains_exactly_the_adapter_and_keeps_the_base(shipped):
    model, tok, base = shipped
    row = compare.run(compare.Lora(rank=4), model, tok, base, steps=2)
    # the adapter's size, counted independently: A (r x in) + B (out x r) per wrapped attention projection
    adapted = lora.apply(copy.deepcopy(model), lora.LoraConfig(rank=4, alpha=16.0))
    layers = lora.lora_layers(adapted)
    expected = sum(4 * (m.base.in_features + m.base.out_features) for m in layers.values())
    assert layers and row.trainable == expected
    assert row.trainable_pct == pytest.approx(100 * expected / (model.num_params() + expected))
    assert row.trainable_pct < 5 and row.base_identical
    assert row.memory.gradients == 4 * expected                      # fp32 gradients of the adapter only


def test_reft_row_trains_exactly_the_interventions_and_keeps_the_base(shipped):
    model, tok, base = shipped
    row = compare.run(compare.Reft(), model, tok, base, steps=2)
    edited = reft.apply(copy.deepcopy(model), reft.ReftConfig())
    base_ids = {id(p) for p in edited.base_model.parameters()}
    expected = sum(p.numel() for p in edited.parameters() if id(p) not in base_ids)
    assert row.trainable == expected and row.trainable_pct < 1 and row.base_identical
    assert row.memory.gradients == 4 * expected


def test_lora_general_ability_is_measured_with_the_adapter_on(shipped):
    model, tok, base = shipped
    adapted = lora.apply(copy.deepcopy(model), lora.LoraConfig(rank=8, alpha=16.0))
    small = lambda m: compare.general_ability(m, tok, max_windows=8).perplexity  # noqa: E731
    assert small(adapted) == pytest.approx(small(model), rel=1e-5)  # B = 0: the adapter is a no-op
    with torch.no_grad():
        for layer in lora.lora_layers(adapted).values():
            layer.B.normal_(0, 0.05)
    assert abs(small(adapted) / small(model) - 1) > 1e-3, "general ability ignored the adapter"


def test_reft_general_ability_sees_the_edit(shipped):
    model, tok, base = shipped
    edited = reft.apply(copy.deepcopy(model), reft.ReftConfig())
    with torch.no_grad():
        for p in edited.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn_like(p))
    deployed = reft.deploy(edited)
    got = compare.general_ability(deployed, tok, forward=deployed, max_windows=8).perplexity
    assert abs(got / compare.general_ability(model, tok, max_windows=8).perplexity - 1) > 1e-3


def test_rlhf_holds_policy_reference_and_reward_model(shipped):
    model, tok, base = shipped
    method = compare.Rlhf(pairs_per_prompt=1, eval_samples=1,
                          reward_cfg=TrainConfig(steps=2, batch_size=8, lr=3e-4, warmup=0))
    row = compare.run(method, model, tok, base, steps=2)
    assert row.models_held >= 3 and row.metric == "win rate"
    assert row.before == 0.5                                         # the start ties with itself
    assert row.trainable == model.num_params() + model.cfg.n_embd + 1    # policy + value head
    assert row.memory.weights >= 3 * _bytes(model)                    # three models' weights in memory
    assert row.train_s > row.step_s * row.steps                      # reward model training counted
    assert "preference pairs" in row.data


def test_dpo_and_grpo_hold_policy_and_reference(shipped):
    model, tok, base = shipped
    dpo = compare.run(compare.Dpo(pairs_per_prompt=1, eval_samples=1), model, tok, base, steps=1)
    assert dpo.models_held == 2 and dpo.metric == "win rate" and dpo.before == 0.5
    assert 2 * _bytes(model) <= dpo.memory.weights < 3 * _bytes(model)
    grpo = compare.run(compare.Grpo(samples=1), model, tok, base, steps=1)
    assert grpo.models_held == 2 and grpo.metric == "accuracy" and "checker" in grpo.data
    assert 0 <= grpo.before <= 1


def test_distillation_counts_the_teacher_and_deploys_the_student(shipped):
    model, tok, base = shipped
    method = compare.Distillation(student_pretrain=TrainConfig(steps=2, batch_size=8, lr=3e-3, warmup=0))
    row = compare.run(method, model, tok, base, steps=1)
    student = row.notes["student parameters"]
    assert row.models_held == 2 and row.notes["teacher parameters"] == model.num_params() > 3 * student
    assert row.trainable == student and row.trainable_pct == pytest.approx(100.0)
    assert row.memory.weights >= _bytes(model) + 4 * student          # the teacher's weights are counted


def test_metric_kinds_are_never_mixed():
    Row = compare.Row
    fields = {f.name: None for f in dataclasses.fields(Row)}
    rows = [Row(**{**fields, "method": m, "metric": k}) for m, k in
            [("a", "accuracy"), ("b", "win rate"), ("c", "accuracy"), ("d", "win rate")]]
    groups = compare.by_metric(rows)
    assert set(groups) == {"accuracy", "win rate"}
    assert all({r.metric for r in g} == {k} for k, g in groups.items())
    assert [r.method for r in groups["accuracy"]] == ["a", "c"]


def test_bad_budget_names_the_fix(shipped):
    model, tok, base = shipped
    with pytest.raises(ValueError, match="steps must be >= 1"):
        compare.run(compare.FullFineTuning(), model, tok, base, steps=0)


def test_early_stopping_compares_at_a_matched_target(shipped):
    model, tok, base = shipped
    row = compare.run(compare.FullFineTuning(), model, tok, base, steps=40, stop_at=0.0, check_every=2)
    assert row.steps == 2 and row.notes["stopped at step"] == 2       # any accuracy >= 0: the first check stops it
    assert row.notes["validation target reached"] and row.step_s == pytest.approx(row.train_s / 2)
    row = compare.run(compare.FullFineTuning(), model, tok, base, steps=4, stop_at=1.01, check_every=2)
    assert row.steps == 4 and not row.notes["validation target reached"]   # unreachable: the whole budget
    with pytest.raises(ValueError, match="no validation metric"):
        compare.run(compare.Multitask(), model, tok, base, steps=2, stop_at=0.9)
    with pytest.raises(ValueError, match="check_every"):
        compare.run(compare.FullFineTuning(), model, tok, base, steps=2, stop_at=0.9, check_every=0)


def test_distillation_control_trains_the_same_student_on_the_labels_alone(shipped):
    model, tok, base = shipped
    method = compare.Distillation(student_pretrain=TrainConfig(steps=2, batch_size=8, lr=3e-3, warmup=0))
    row = compare.run(method, model, tok, base, steps=3)
    assert 0 <= row.notes["student on the labels alone (test)"] <= 1
    assert row.notes["student on the labels alone, general perplexity"] > 1
    off = compare.run(dataclasses.replace(method, compare_hard_labels=False), model, tok, base, steps=3)
    assert "student on the labels alone (test)" not in off.notes
    assert off.after == row.after and off.perplexity == row.perplexity     # the control leaves the row unchanged
