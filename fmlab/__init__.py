"""fmlab: the small package behind the course "How foundation models are trained and fine-tuned".

Modules, one per concept (import the one you need, e.g. ``from fmlab import lora``):
world, corpus, tasks, domain (data) · tokenizer · gpt (MiniGPT) · batches · train (the one loop) · evaluate ·
checkpoint · compute (counted FLOPs and bytes) · foundation (data/ and the shipped base model) · device · plots · widgets · quiz · colab ·
memory · recipes · lora · reft · probe · curation · governance · preference · reward · rlhf · ppo · dpo ·
grpo · verifier · distill · metrics · judge (evaluation) · hf (Hugging Face export/import) · distributed (DDP) · compare.
"""
__version__ = "0.1.0"
