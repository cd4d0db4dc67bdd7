"""fmlab's DPO, reward-model, PPO and GRPO losses agree with TRL's trainers on the same tiny model and batch.

No downloads: a randomly initialised 1-layer GPT-2 and a word-level tokenizer built here.
Needs: transformers, trl, datasets, tokenizers (skipped when trl is missing).

PPO: TRL 1.x no longer ships ``PPOTrainer``; its clipped-ratio code lives on in ``GRPOTrainer._compute_loss``,
which accepts per-token advantages.  With ``loss_type="bnpo"`` (mean over every completion token of the
batch, as the old PPOTrainer's ``masked_mean``) and ``beta=0`` it is PPO's clipped policy loss.
"""
import tempfile
import warnings

import pytest
import torch

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel,  # noqa: E402
                          PreTrainedTokenizerFast)

from fmlab import dpo, grpo, ppo, reward, rollout  # noqa: E402

WORDS = "<pad> <eos> tell me about ada bob . she he likes cats dogs is kind rude".split()
PAIRS = {"prompt": ["tell me about ada .", "tell me about bob .", "tell me about ada ."],
         "chosen": [" she is kind .", " he likes dogs .", " she likes cats ."],
         "rejected": [" she is rude . rude", " cats .", " he is rude ."]}


def _tokenizer() -> PreTrainedTokenizerFast:
    core = HFTokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")


def _config(**kw) -> GPT2Config:
    return GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                      bos_token_id=1, eos_token_id=1, pad_token_id=0, **kw)


class _Logits(torch.nn.Module):
    """Make a Hugging Face causal LM look like MiniGPT: forward(tokens) -> logits."""
    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, tokens):
        return self.hf_model(input_ids=tokens).logits


def _args(cls, directory: str, **kw):
    return cls(output_dir=directory, per_device_train_batch_size=len(PAIRS["prompt"]), report_to=[],
               use_cpu=True, dataloader_num_workers=0, logging_strategy="no", save_strategy="no", **kw)


@torch.no_grad()
def test_dpo_loss_matches_trl_dpo_trainer():
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(_config()).eval()
    torch.manual_seed(1)
    ref = GPT2LMHeadModel(_config()).eval()          # a different model, so the loss is not just log 2
    beta = 0.3
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=_args(trl.DPOConfig, d, beta=beta),
                                 train_dataset=Dataset.from_dict(PAIRS), processing_class=_tokenizer())
        batch = next(iter(trainer.get_train_dataloader()))
        trl_loss = trainer.compute_loss(policy, batch)
    tokens, mask = batch["input_ids"], batch["completion_mask"]
    prompt_len, length = mask.argmax(1), batch["attention_mask"].sum(1)      # right padding: contiguous spans
    assert torch.equal(mask[:, 1:].bool(), rollout.completion_mask(tokens, prompt_len, length))
    logp = rollout.sequence_logprobs(_Logits(policy), tokens, prompt_len, length)
    ref_logp = rollout.sequence_logprobs(_Logits(ref), tokens, prompt_len, length)
    n = len(PAIRS["prompt"])                          # TRL stacks chosen rows, then rejected rows, as we do
    ours = dpo.dpo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], beta)
    assert abs(ours.item() - torch.log(torch.tensor(2.0)).item()) > 1e-3
    torch.testing.assert_close(ours, trl_loss.float(), atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_bradley_terry_loss_matches_trl_reward_trainer():
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(_config(num_labels=1)).eval()
    data = Dataset.from_dict({"chosen": [p + c for p, c in zip(PAIRS["prompt"], PAIRS["chosen"])],
                              "rejected": [p + r for p, r in zip(PAIRS["prompt"], PAIRS["rejected"])]})
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.RewardTrainer(model=model, args=_args(trl.RewardConfig, d), train_dataset=data,
                                    processing_class=_tokenizer())
        batch = next(iter(trainer.get_train_dataloader()))
        trl_loss = trainer.compute_loss(model, batch)
    rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    n = len(PAIRS["prompt"])
    ours = reward.bradley_terry_loss(rewards[:n], rewards[n:])
    torch.testing.assert_close(ours, trl_loss.float(), atol=1e-6, rtol=1e-6)


# --- PPO and GRPO: TRL's loss code run on fmlab's per-token log-probs ------------------------------------
COMPLETIONS = ["she is kind . <eos>", "she likes cats <eos> <pad>", "he is rude . rude", "cats . <eos> <pad> <pad>"]


def _grpo_trainer(directory: str, **kw):
    """A GRPOTrainer on a tiny saved GPT-2 (a path, so TRL can build its own reference copy when beta > 0)."""
    GPT2LMHeadModel(_config()).save_pretrained(f"{directory}/policy")
    args = trl.GRPOConfig(output_dir=directory, per_device_train_batch_size=len(COMPLETIONS), num_generations=2,
                          report_to=[], use_cpu=True, dataloader_num_workers=0, logging_strategy="no",
                          save_strategy="no", **kw)
    dataset = Dataset.from_dict({"prompt": ["tell me about ada ."] * len(COMPLETIONS)})
    trainer = trl.GRPOTrainer(model=f"{directory}/policy", args=args, train_dataset=dataset,
                              reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                              processing_class=_tokenizer())
    return trainer, trainer.model.eval()


def _rollout(policy):
    """Prompt + completion tokens, TRL's inputs, and fmlab's per-token log-probs on the same rows."""
    tok = _tokenizer()
    prompt = torch.tensor([tok.encode("tell me about ada .")] * len(COMPLETIONS))
    completion = torch.tensor([tok.encode(c) for c in COMPLETIONS])
    completion_mask = (completion != tok.pad_token_id).long()
    P = prompt.size(1)
    tokens = torch.cat([prompt, completion], 1)
    logp, mask = rollout.token_logprobs(_Logits(policy), tokens, torch.full((len(tokens),), P), P + completion_mask.sum(1))
    inputs = {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
              "completion_mask": completion_mask}
    return inputs, logp, mask, P


def _trl_loss(trainer, policy, inputs, logp_completion):
    """TRL's `_compute_loss`, fed fmlab's log-probs (TRL's fused LM head differs from a plain forward by ~1e-4)."""
    with torch.no_grad():
        trl_logp = trainer._get_per_token_logps_and_entropies(
            policy, torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1), inputs["completion_ids"].size(1))[0]
    m = inputs["completion_mask"].bool()
    torch.testing.assert_close(trl_logp[m], logp_completion[m], atol=2e-3, rtol=0)     # the same model, both ways
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logp_completion, torch.zeros_like(logp_completion), None)
    with torch.no_grad():
        return trainer._compute_loss(policy, inputs)


def test_ppo_clipped_policy_loss_matches_trl():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer, policy = _grpo_trainer(d, beta=0.0, loss_type="bnpo", epsilon=0.2)
        inputs, logp, mask, P = _rollout(policy)
        g = torch.Generator().manual_seed(0)
        old = (logp + 0.3 * torch.randn(logp.shape, generator=g)) * mask      # pi_old != pi: ratios vary
        adv = torch.randn(logp.shape, generator=g) * mask                      # per-token advantages (GAE)
        inputs.update(old_per_token_logps=old[:, P - 1:], advantages=adv[:, P - 1:])
        trl_loss = _trl_loss(trainer, policy, inputs, logp[:, P - 1:])
        trl_clip = trainer._metrics["eval"]["clip_ratio/region_mean"][-1]
    ours, clip_fraction = ppo.clipped_policy_loss(logp, old, adv, mask, clip=0.2)
    assert 0.1 < clip_fraction < 0.9                   # the clip acts on some tokens, not on all
    torch.testing.assert_close(ours, trl_loss.float(), atol=1e-6, rtol=1e-6)
    assert clip_fraction.item() == pytest.approx(trl_clip, abs=1e-6)


def test_grpo_loss_matches_trl():
    torch.manual_seed(0)
    beta = 0.1
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer, policy = _grpo_trainer(d, beta=beta, loss_type="grpo", epsilon=0.2,
                                        use_bias_correction_kl=False)    # the paper's KL term (see grpo.py)
        inputs, logp, mask, P = _rollout(policy)
        g = torch.Generator().manual_seed(0)
        old = (logp + 0.3 * torch.randn(logp.shape, generator=g)) * mask
        ref_logp = (logp + 0.5 * torch.randn(logp.shape, generator=g)) * mask   # a reference the policy left
        adv = grpo.group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group=2)
        inputs.update(old_per_token_logps=old[:, P - 1:], ref_per_token_logps=ref_logp[:, P - 1:], advantages=adv)
        trl_loss = _trl_loss(trainer, policy, inputs, logp[:, P - 1:])
    ours = grpo.grpo_loss(logp, old, ref_logp, adv, mask, beta=beta, clip=0.2)
    assert grpo.k3_kl(logp, ref_logp)[mask].mean() > 0.05          # the KL term contributes
    torch.testing.assert_close(ours, trl_loss.float(), atol=1e-6, rtol=1e-6)

