"""fmlab: the small package behind the course "How foundation models are trained and fine-tuned".

Modules, one per concept (import the one you need, e.g. ``from fmlab import lora``):
world, tasks, domain (data) · tokenizer · gpt (MiniGPT) · batches · train (the one loop) · evaluate ·
checkpoint · foundation (data/ and the shipped base model) · device · plots · widgets · quiz ·
memory · recipes · lora · reft · probe · curation · preference · reward · rlhf · dpo · compare.
"""
__version__ = "0.1.0"
