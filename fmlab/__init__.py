"""fmlab: the small package behind the course "How foundation models are trained and fine-tuned".

One module per concept, imported with the module visible (``from fmlab import lora``; ``lora.apply(...)``).
The modules sit in layers; a module imports only from its own layer or from layers below it, never from
above, and no imports go round in a circle (``tests/test_layers.py`` holds both rules, from `LAYERS` below):

    primitives   gpt (MiniGPT) · tokenizer · device · params (count, freeze, evaluation mode) · compute (counted
                 FLOPs and bytes) · plots · quiz · colab
    data         world · domain · corpus · tasks · batches · curation · governance
    engine       train (the one loop) · evaluate · checkpoint · memory · rollout (sampling and log-probs for
                 every RL method) · metrics · judge
    foundation   foundation (data/ and the shipped base model)
    methods      recipes · lora · reft · probe · reward · preference · rlhf · ppo · dpo · grpo · verifier ·
                 distill · chat · merge · quantize · speculative · scaling
    harness      compare · hf (Hugging Face export/import) · distributed (DDP) · widgets

A new module gets one line in `LAYERS`; the layer test fails for a module that has none.
"""
__version__ = "0.1.0"

LAYERS: dict[str, int] = {      # module -> layer: 0 primitives, 1 data, 2 engine, 3 foundation, 4 methods, 5 harness
    "gpt": 0, "tokenizer": 0, "device": 0, "params": 0, "compute": 0, "plots": 0, "quiz": 0, "colab": 0,
    "world": 1, "domain": 1, "corpus": 1, "tasks": 1, "batches": 1, "curation": 1, "governance": 1,
    "train": 2, "evaluate": 2, "checkpoint": 2, "memory": 2, "rollout": 2, "metrics": 2, "judge": 2,
    "foundation": 3,
    "recipes": 4, "lora": 4, "reft": 4, "probe": 4, "reward": 4, "preference": 4, "rlhf": 4, "ppo": 4, "dpo": 4,
    "grpo": 4, "verifier": 4, "distill": 4,
    "chat": 4, "merge": 4, "quantize": 4, "speculative": 4, "scaling": 4,
    "compare": 5, "hf": 5, "distributed": 5, "widgets": 5,
}
