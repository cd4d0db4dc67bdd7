import math

import pytest
import torch
import torch.nn.functional as F

from fmlab import batches, distill, evaluate, tasks
from fmlab.batches import IGNORE
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.train import TrainConfig, train


def test_loss_equals_a_hand_computed_value():
    # T = 2: teacher logits / T = [ln 2, 0, 0] -> p_t = (1/2, 1/4, 1/4); student uniform -> p_s = (1/3, 1/3, 1/3).
    # KL = 1/2 ln(3/2) + 2 * 1/4 ln(3/4) = 1/2 ln(9/8); T^2 KL = 2 ln(9/8); CE(label 0, uniform) = ln 3.
    teacher = torch.tensor([[[2 * math.log(2), 0.0, 0.0]]])
    student = torch.zeros(1, 1, 3)
    label = torch.tensor([[0]])
    expected = 0.5 * 2 * math.log(9 / 8) + 0.5 * math.log(3)          # = 0.66709...
    assert distill.distillation_loss(student, teacher, label, 2.0, 0.5).item() == pytest.approx(expected, rel=1e-6)
    assert distill.distillation_loss(student, teacher, label, 2.0, 1.0).item() == pytest.approx(math.log(3), rel=1e-6)
    soft_only = distill.distillation_loss(student, teacher, label, 2.0, 0.0).item()
    assert soft_only == pytest.approx(2 * math.log(9 / 8), rel=1e-6)


def test_zero_when_the_student_is_the_teacher_and_no_label_weight():
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(0, 11, (3, 5))
    for T in (0.5, 1.0, 4.0):
        assert distill.distillation_loss(logits, logits.clone(), targets, T, 0.0).item() == pytest.approx(0, abs=1e-6)
    assert distill.distillation_loss(logits, logits.clone(), targets, 2.0, 0.3).item() > 0.1   # the label term remains


def test_matches_torch_kl_div_and_cross_entropy():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 6, 13, generator=g), torch.randn(4, 6, 13, generator=g)
    targets = torch.randint(0, 13, (4, 6), generator=g)
    targets[:, :3] = IGNORE
    keep = targets != IGNORE
    T, w = 3.0, 0.25
    kl = F.kl_div(F.log_softmax(student[keep] / T, -1), F.log_softmax(teacher[keep] / T, -1), log_target=True,
                  reduction="batchmean")
    reference = (1 - w) * T ** 2 * kl + w * F.cross_entropy(student[keep], targets[keep])
    torch.testing.assert_close(distill.distillation_loss(student, teacher, targets, T, w), reference)


def test_masked_positions_carry_no_loss():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    targets = torch.tensor([[IGNORE, IGNORE, 3, 1, IGNORE], [IGNORE, 2, 2, IGNORE, IGNORE]])
    loss = distill.distillation_loss(student, teacher, targets, 2.0, 0.5)
    changed_s, changed_t = student.clone(), teacher.clone()
    changed_s[targets == IGNORE] = 100 * torch.randn(6, 7, generator=g)       # garbage where the prompt is
    changed_t[targets == IGNORE] = -50.0
    torch.testing.assert_close(distill.distillation_loss(changed_s, changed_t, targets, 2.0, 0.5), loss)
    # only the 4 answer positions count, each with the same weight
    per_position = [distill.distillation_loss(student[b, t][None, None], teacher[b, t][None, None],
                                              targets[b, t][None, None], 2.0, 0.5)
                    for b, t in (targets != IGNORE).nonzero().tolist()]
    torch.testing.assert_close(loss, torch.stack(per_position).mean())


def test_t_squared_keeps_the_gradient_size_at_high_temperature():
    # Hinton et al. 2.1: for large T the soft term's gradient w.r.t. the student logits tends to
    # (z_s - z_t) / (V T^2) for zero-mean logits; times T^2 it no longer depends on T: logit matching.
    g = torch.Generator().manual_seed(2)
    V = 9
    z_t, z_s = torch.randn(1, 1, V, generator=g), torch.randn(1, 1, V, generator=g)
    z_t, z_s = z_t - z_t.mean(), z_s - z_s.mean()
    label = torch.tensor([[0]])
    grads = {}
    for T in (100.0, 200.0):
        student = z_s.clone().requires_grad_(True)
        distill.distillation_loss(student, z_t, label, T, 0.0).backward()
        grads[T] = student.grad.flatten()
    logit_matching = ((z_s - z_t) / V).flatten()
    scale = logit_matching.abs().max().item()
    torch.testing.assert_close(grads[200.0], logit_matching, rtol=0, atol=0.02 * scale)
    torch.testing.assert_close(grads[100.0], grads[200.0], rtol=0, atol=0.03 * scale)
    # without the T^2 factor the gradient would shrink 4x from T = 100 to T = 200
    assert grads[200.0].norm() / grads[100.0].norm() == pytest.approx(1.0, abs=0.03)


def test_bad_settings_are_refused():
    x, y = torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        distill.distillation_loss(x, x, y, 0.0, 0.5)
    with pytest.raises(ValueError, match="label_weight"):
        distill.distillation_loss_fn(2.0, 1.5)
    with pytest.raises(ValueError, match="tokenizer"):
        distill.distillation_loss(x, torch.zeros(1, 1, 4), y, 2.0, 0.5)


def _examples():
    return [{"task": "t", "instruction": "answer", "input": text, "output": out}
            for text, out in [("the cat", "mat"), ("ada lives in", "paris"), ("the mat", "cat"), ("ada", "paris")]]


def _student(tok, seed=1):
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=1, n_head=2, n_embd=32))


def test_soft_target_batches_match_instruction_batches_and_the_online_teacher(tiny_model, tiny_tok):
    examples = _examples()
    hard = batches.instruction_batches(tiny_tok, examples, 64)(6, torch.Generator().manual_seed(3))
    soft = distill.soft_target_batches(tiny_model, tiny_tok, examples, 64)(6, torch.Generator().manual_seed(3))
    assert torch.equal(hard["tokens"], soft["tokens"]) and torch.equal(hard["targets"], soft["targets"])
    keep = soft["targets"] != IGNORE
    with torch.no_grad():
        live = tiny_model(soft["tokens"])
    torch.testing.assert_close(soft["teacher_logits"][keep], live[keep], rtol=1e-5, atol=1e-5)
    assert soft["teacher_logits"][~keep].abs().sum() == 0
    student = _student(tiny_tok)
    offline = distill.distillation_loss_fn(2.0, 0.5)(student, soft)
    online = distill.distillation_loss_fn(2.0, 0.5, teacher=tiny_model)(student, soft)
    torch.testing.assert_close(offline, online, rtol=1e-5, atol=1e-5)


def test_distillation_moves_the_student_towards_the_teacher(tiny_model, tiny_tok):
    examples = _examples()
    student = _student(tiny_tok)
    soft = distill.soft_target_batches(tiny_model, tiny_tok, examples, 64)
    batch = soft(8, torch.Generator().manual_seed(0))
    pure_kl = distill.distillation_loss_fn(1.0, 0.0)
    before = pure_kl(student, batch).item()
    train(student, soft, TrainConfig(steps=30, batch_size=8, lr=1e-2, warmup=1, progress=False),
          loss_fn=distill.distillation_loss_fn(2.0, 0.0))
    assert pure_kl(student, batch).item() < 0.5 * before


@pytest.mark.filterwarnings("ignore:the prompt contains tokens")      # the tiny tokenizer's rare pieces
def test_teacher_answers_are_what_greedy_generation_writes(tiny_model, tiny_tok):
    examples = _examples()
    answers = distill.teacher_answers(tiny_model, tiny_tok, examples, max_new_tokens=4)
    one_by_one = [evaluate.complete(tiny_model, tiny_tok, tasks.format_prompt(ex), 4).strip() for ex in examples]
    assert answers == one_by_one
    unlabelled = [{k: v for k, v in ex.items() if k != "output"} for ex in examples]
    labelled = distill.label_with_teacher(tiny_model, tiny_tok, unlabelled, max_new_tokens=4)
    assert [ex["output"] for ex in labelled] == [a for a in answers if a]
    assert all(ex["labelled_by"] == "teacher" for ex in labelled)


def test_a_trained_teacher_labels_prompts_correctly(tiny_tok):
    # A teacher that learned the task writes the right answers; a student trained on them learns it too.
    examples = _examples()[:2]                                    # "the cat" -> mat, "ada lives in" -> paris
    teacher = _student(tiny_tok, seed=0)
    cfg = TrainConfig(steps=80, batch_size=8, lr=1e-2, warmup=5, progress=False)
    train(teacher, batches.instruction_batches(tiny_tok, examples, 64), cfg)
    assert evaluate.accuracy(teacher, tiny_tok, examples) == 1.0
    labelled = distill.label_with_teacher(teacher, tiny_tok, [{**ex, "output": "?"} for ex in examples])
    assert [ex["output"] for ex in labelled] == ["mat", "paris"]
    student = _student(tiny_tok, seed=2)
    train(student, batches.instruction_batches(tiny_tok, labelled, 64), cfg)
    assert evaluate.accuracy(student, tiny_tok, examples) == 1.0


def test_generation_speed_reports_positive_rates(tiny_model, tiny_tok):
    speed = distill.generation_speed(tiny_model, tiny_tok, _examples(), new_tokens=2, repeats=1)
    assert speed["ms_per_answer"] > 0 and speed["tokens_per_s"] > 0
