"""Training throughput of MiniGPT vs Hugging Face GPT-2 at the same configuration, side by side.

    python bench/throughput.py [--steps 30] [--repeats 5]

One training step = forward + backward + AdamW update on a batch of random tokens.  Each model runs
`repeats` timed blocks of `steps` steps, interleaved so that machine load hits both alike; the median
tokens/s is reported.  The last line is `ratio_vs_hf=<MiniGPT tokens/s / GPT-2 tokens/s>` at the small
configuration (the course's base model shape).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from fmlab.gpt import GPTConfig, MiniGPT

CONFIGS = {  # name: (n_layer, n_head, n_embd, block_size, batch_size)
    "small (course base)": (4, 4, 128, 64, 12),
    "larger": (6, 8, 256, 128, 12),
}
VOCAB = 904   # the shipped tokenizer (len(foundation.load_tokenizer()))


def make_fmlab(n_layer, n_head, n_embd, block):
    return MiniGPT(GPTConfig(vocab_size=VOCAB, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd))


def make_hf(n_layer, n_head, n_embd, block):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=block, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(cfg)


def step_fn(model, hf: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(tokens):
        logits = model(tokens).logits if hf else model(tokens)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def timed(step, tokens, n):
    start = time.perf_counter()
    for _ in range(n):
        step(tokens)
    return tokens.numel() * n / (time.perf_counter() - start)


def bench(shape, steps, repeats):
    n_layer, n_head, n_embd, block, batch = shape
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (batch, block))
    steps_by_name = {"fmlab MiniGPT": step_fn(make_fmlab(n_layer, n_head, n_embd, block), False),
                     "HF GPT2LMHeadModel": step_fn(make_hf(n_layer, n_head, n_embd, block), True)}
    for step in steps_by_name.values():
        timed(step, tokens, 3)                            # warm-up
    rates = {name: [] for name in steps_by_name}
    for _ in range(repeats):                              # interleaved repeats
        for name, step in steps_by_name.items():
            rates[name].append(timed(step, tokens, steps))
    return {name: statistics.median(r) for name, r in rates.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor()} | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()} | cuda {torch.cuda.is_available()}")
    ratios = {}
    for name, shape in CONFIGS.items():
        res = bench(shape, args.steps, args.repeats)
        ratios[name] = res["fmlab MiniGPT"] / res["HF GPT2LMHeadModel"]
        print(f"{name:22s} layers={shape[0]} heads={shape[1]} width={shape[2]} block={shape[3]} batch={shape[4]}: "
              + "  ".join(f"{k} {v:,.0f} tok/s" for k, v in res.items()) + f"  ratio {ratios[name]:.2f}")
    print(f"ratio_vs_hf={ratios['small (course base)']:.3f}")


if __name__ == "__main__":
    main()
