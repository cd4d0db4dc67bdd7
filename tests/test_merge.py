"""Task arithmetic and TIES against hand-computed values and peft's merge utilities."""
import copy

import pytest
import torch

from fmlab import lora, merge


def test_task_arithmetic_hand_computed():
    taus = [{"w": torch.tensor([1.0, -2.0])}, {"w": torch.tensor([3.0, 1.0])}]
    assert merge.task_arithmetic(taus, 0.5)["w"].tolist() == [2.0, -0.5]


def test_ties_hand_computed():
    taus = [{"w": torch.tensor([4.0, -1.0, 0.5, 2.0])}, {"w": torch.tensor([-3.0, -2.0, 0.1, 1.0])}]
    # trim to half: [4, 0, 0, 2] and [-3, -2, 0, 0]; signs of the sums [1, -2, 0, 2] -> [+, -, +, +];
    # mean of the agreeing entries: [4, -2, 0 (none agree), 2]
    assert merge.ties(taus, lam=1.0, density=0.5)["w"].tolist() == [4.0, -2.0, 0.0, 2.0]
    assert merge.ties(taus, lam=0.5, density=0.5)["w"].tolist() == [2.0, -1.0, 0.0, 1.0]


def test_ties_and_task_arithmetic_match_peft():
    merge_utils = pytest.importorskip("peft.utils.merge_utils")
    torch.manual_seed(0)
    taus = [{"w": torch.randn(8, 16), "b": torch.randn(16)} for _ in range(3)]
    ones = torch.ones(3)
    for density in (0.25, 0.5, 1.0):
        ours = merge.ties(taus, lam=1.0, density=density)
        for k in ("w", "b"):
            theirs = merge_utils.ties([t[k] for t in taus], ones, density, majority_sign_method="total")
            torch.testing.assert_close(ours[k], theirs)
    weights = torch.tensor([0.3, 0.3, 0.3])
    torch.testing.assert_close(merge.task_arithmetic(taus, 0.3)["w"],
                               merge_utils.task_arithmetic([t["w"] for t in taus], weights))


def test_trim_keeps_the_largest_magnitudes():
    tau = torch.tensor([[0.1, -5.0], [3.0, -0.2]])
    assert merge.trim(tau, 0.5).tolist() == [[0.0, -5.0], [3.0, 0.0]]
    with pytest.raises(ValueError):
        merge.trim(tau, 0.0)


def _nudged(model, seed):
    tuned = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return tuned


def test_one_task_vector_at_lambda_one_gives_back_the_fine_tuned_model(tiny_model):
    tuned = _nudged(tiny_model, 1)
    tokens = torch.randint(0, tiny_model.cfg.vocab_size, (2, 10))
    back = merge.merged_model(tiny_model, merge.task_arithmetic([merge.task_vector(tuned, tiny_model)], 1.0))
    with torch.no_grad():
        torch.testing.assert_close(back(tokens), tuned(tokens))
        base_again = merge.merged_model(tiny_model, merge.task_arithmetic([merge.task_vector(tuned, tiny_model)], 0.0))
        torch.testing.assert_close(base_again(tokens), tiny_model(tokens))


def test_lora_task_vector_equals_the_adapter(tiny_model):
    adapted = lora.apply(copy.deepcopy(tiny_model), lora.LoraConfig(rank=2, alpha=4))
    with torch.no_grad():
        for layer in lora.lora_layers(adapted).values():
            layer.B.normal_(0, 0.1)
    tokens = torch.randint(0, tiny_model.cfg.vocab_size, (2, 10))
    tau = merge.lora_task_vector(adapted, tiny_model)
    assert sum(bool(v.abs().sum() > 0) for v in tau.values()) == 2 * tiny_model.cfg.n_layer   # qkv and proj only
    with torch.no_grad():
        torch.testing.assert_close(merge.merged_model(tiny_model, tau)(tokens), adapted(tokens))
