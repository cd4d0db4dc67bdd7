"""fmlab's DPO and reward-model losses agree with TRL's trainers on the same tiny model and batch.

No downloads: a randomly initialised 1-layer GPT-2 and a word-level tokenizer built here.
Needs: transformers, trl, datasets, tokenizers (skipped when trl is missing).
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

from fmlab import dpo, reward, rlhf  # noqa: E402

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
    assert torch.equal(mask[:, 1:].bool(), rlhf.completion_mask(tokens, prompt_len, length))
    logp = rlhf.sequence_logprobs(_Logits(policy), tokens, prompt_len, length)
    ref_logp = rlhf.sequence_logprobs(_Logits(ref), tokens, prompt_len, length)
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
