"""Fine-tuning recipes found in the notebooks, kept in one place so later notebooks reuse them exactly.

Why these learning rates: the base model was pre-trained at a peak of 3e-3 (`foundation.PRETRAIN`).
Fine-tuning starts from weights that already work, so it takes smaller steps -- practitioners fine-tune at
1/10 to 1/100 of the pre-training peak (e.g. 1e-5 to 1e-4 for 7B models pre-trained at ~3e-4).  Every
full fine-tuning recipe here is at 1/10 of the peak or below.

- `SENTIMENT_FT`: full fine-tuning of the shipped base model on the ``sentiment`` task (notebook 02), lr 3e-4
  (1/10 of the pre-training peak).  LoRA (04) and ReFT (05) compare against this run; notebook 03 reuses it
  for task B.
- `TRANSLATE_FT`: the same recipe, longer, for the translation task (task A in notebook 03).
- `LORA_FT`: LoRA on the same task: adapters start at zero, so LoRA trains at the same rate for longer.
- `REFT_FT`: LoReFT (pyreft's setting: every layer, first and last prompt token, rank 4).  The intervention
  is a new, small module trained from its initialisation, so its rate is the paper's (Wu et al. use
  1e-3 - 9e-3), not a fine-tuning rate for existing weights.

Use with ``dataclasses.replace(SENTIMENT_FT, seed=..., eval_every=...)``.  The measured results of each
recipe (3 seeds) are stated in the notebook that uses it.
"""
from __future__ import annotations

import dataclasses

from .train import TrainConfig

__all__ = ["SENTIMENT_TASK", "SENTIMENT_FT", "TRANSLATE_FT", "LORA_FT", "REFT_FT"]

SENTIMENT_TASK = "sentiment"
SENTIMENT_FT = TrainConfig(steps=60, batch_size=16, lr=3e-4, warmup=6, min_lr_ratio=0.1, weight_decay=0.1,
                           seed=0)
TRANSLATE_FT = dataclasses.replace(SENTIMENT_FT, steps=100, warmup=10)
LORA_FT = dataclasses.replace(SENTIMENT_FT, steps=80, warmup=8, weight_decay=0.0)
REFT_FT = TrainConfig(steps=150, batch_size=32, lr=4e-3, warmup=15, min_lr_ratio=0.1, weight_decay=0.0, seed=0)
