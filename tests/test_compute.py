"""Counted work: FLOPs match hand counts and the 2·N / 6·N rules; bytes of weights match the parameter count."""
import torch

from fmlab import compute
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.train import lm_loss


def test_a_linear_layer_costs_two_flops_per_weight_per_row():
    layer = torch.nn.Linear(8, 5, bias=False)
    with compute.count_flops() as work:
        layer(torch.randn(3, 8))
    assert work.flops == 2 * 3 * 8 * 5          # hand count: rows x (multiply + add) x weights


def test_training_step_is_about_six_n_flops_per_token():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=32))
    tokens = torch.randint(0, 97, (4, 16))
    # the weights of matrix products: every Linear (the head is the tied embedding); biases, LayerNorms and the
    # position embeddings add no matrix work
    n_matrix = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    with compute.count_flops() as fwd:
        with torch.no_grad():
            model(tokens)
    with compute.count_flops() as step:
        lm_loss(model(tokens), tokens).backward()
    per_token_fwd, per_token_step = fwd.flops / tokens.numel(), step.flops / tokens.numel()
    assert per_token_fwd == compute.forward_flops_per_token(n_matrix), (per_token_fwd, n_matrix)
    # backward = 2 x forward, less the first layer's input gradient (the embedding needs none)
    assert 5.8 * n_matrix <= per_token_step <= compute.training_flops_per_token(n_matrix), (per_token_step, n_matrix)


def test_weight_bytes_counts_a_tied_weight_once_and_follows_the_dtype():
    model = MiniGPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=1, n_embd=8))
    assert compute.weight_bytes(model) == 4 * model.num_params()
    assert compute.weight_bytes(model.to(torch.bfloat16)) == 2 * model.num_params()
