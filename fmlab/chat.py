"""Chat templates and the assistant-only loss: how instruction tuning formats conversations.

A chat model reads a conversation as one token sequence.  A *chat template* writes each message after a
role marker and ends it with an end-of-turn token (Hugging Face's ``apply_chat_template`` renders it from a
Jinja template stored with the tokenizer).  Ours, for messages m_1 .. m_n::

    <|system|> you rate food reviews .<eos><|user|> the bread was sweet .<eos><|assistant|> positive<eos>

Fine-tuning then takes the loss on the *assistant's* tokens only (its reply and the end-of-turn token that
stops it); system and user tokens are read but carry no loss -- the mask that Hugging Face marks with
``{% generation %}`` in the template (``return_assistant_tokens_mask``) and TRL applies with
``assistant_only_loss``.  Without it the model is also trained to write the user's turns.

Why these special tokens (the course's rule: nothing the course emits is an untrained id).  The base model
and its 904-id tokenizer are fixed.  End of turn is ``<eos>``: a single id the base model trained on at the
end of every pre-training document (Zephyr and Llama 2 chat also end turns with their end-of-sequence token).
So every id an assistant emits -- its words and ``<eos>`` -- was trained in pre-training.  The three role
markers are new ids (904, 905, 906), as real SFT adds tokens such as ChatML's ``<|im_start|>``: new rows of
the (tied) embedding matrix, started from the mean of the trained rows of the role's name (" system", ...),
so no row starts as noise, then trained during fine-tuning.  The assistant never has to emit a marker: the
assistant-only loss never makes one a target.  (Real models went wrong here: Llama 3's *base* model ships
its chat tokens -- ``<|start_header_id|>``, ``<|eot_id|>`` -- with rows that were never trained; fine-tuning it
on the Llama 3 template with frozen embeddings gave NaNs or a model that rarely emits ``<|eot_id|>`` and runs
on, and Unsloth's fix sets such rows to the mean of the trained rows: unslothai/unsloth #658, #915,
meta-pytorch/torchtune #2429.)

Simplifications vs real templates: no newline after the role (our world's text has spaced punctuation and
no line breaks), one turn separator only, and no tool calls.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import torch

from .batches import IGNORE, Batcher, pad_batch
from .evaluate import greedy_match
from .gpt import MiniGPT
from .tokenizer import EOS, Tokenizer

__all__ = ["ROLES", "ROLE_TOKENS", "CHAT_TEMPLATE", "render", "ChatTokenizer", "add_role_tokens",
           "conversations", "encode_chat", "chat_rows", "chat_batches", "reply", "reply_rows", "exact_replies"]

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = tuple(f"<|{role}|>" for role in ROLES)

# The same template in Jinja, as it would be stored in a Hugging Face tokenizer_config.json; {% generation %}
# marks the assistant's tokens for return_assistant_tokens_mask.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ ' ' + message['content'] + eos_token }}"
    "{% endgeneration %}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


def render(messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as text: role marker, a space, the content, <eos> -- per message."""
    for m in messages:
        if m["role"] not in ROLES:
            raise ValueError(f"unknown role {m['role']!r}; use one of {ROLES}")
    text = "".join(f"<|{m['role']}|> {m['content']}{EOS}" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


class ChatTokenizer:
    """The course tokenizer plus the three role markers, each kept as one id (904, 905, 906).

    Encoding splits the text at the special strings first (as Hugging Face does for added special tokens),
    so "<|user|>" and "<eos>" are single ids and everything between them is encoded by the BPE tokenizer.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.base = tokenizer
        self.role_id = {role: len(tokenizer) + i for i, role in enumerate(ROLES)}
        self.special_id = {tok: len(tokenizer) + i for i, tok in enumerate(ROLE_TOKENS)} | {EOS: tokenizer.eos_id}
        self._split = re.compile("(" + "|".join(re.escape(s) for s in self.special_id) + ")")
        self.eos_id, self.pad_id = tokenizer.eos_id, tokenizer.pad_id

    def __len__(self) -> int:
        return len(self.base) + len(ROLES)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in self._split.split(text):
            ids += [self.special_id[part]] if part in self.special_id else self.base.encode(part)
        return ids

    def piece(self, i: int) -> str:
        return ROLE_TOKENS[i - len(self.base)] if i >= len(self.base) else self.base.piece(i)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens written out ("<|user|>", "<eos>")."""
        out, run = [], []
        for i in list(ids) + [None]:
            if i is None or i >= len(self.base) or i == self.eos_id:
                out.append(self.base.decode(run))
                run = []
                if i is not None:
                    out.append(EOS if i == self.eos_id else self.piece(i))
            else:
                run.append(i)
        return "".join(out)


def add_role_tokens(model: MiniGPT, chat_tok: ChatTokenizer) -> MiniGPT:
    """A copy of `model` with one new embedding row per role marker (the output layer is tied to it).

    Each new row starts at the mean of the trained rows of the role's name (" system" -> its BPE pieces),
    so it starts among trained numbers; fine-tuning then trains it.
    """
    if model.cfg.vocab_size != len(chat_tok.base):
        raise ValueError(f"model has {model.cfg.vocab_size} ids, the tokenizer {len(chat_tok.base)}")
    old = model.tok_emb.weight.detach()
    new_rows = torch.stack([old[chat_tok.base.encode(" " + role)].mean(0) for role in ROLES])   # (3, C)
    bigger = MiniGPT(dataclasses.replace(model.cfg, vocab_size=len(chat_tok))).to(old.device)
    state = model.state_dict()
    state["tok_emb.weight"] = state["head.weight"] = torch.cat([old, new_rows])
    bigger.load_state_dict(state)
    return bigger


def conversations(examples: Sequence[dict], system: str, max_turns: int, generator: torch.Generator
                  ) -> list[list[dict]]:
    """Multi-turn chats from instruction examples: a system message, then 1..max_turns user/assistant pairs
    (the example's input, its output); every example is used once, in a seeded random order."""
    order = torch.randperm(len(examples), generator=generator).tolist()
    chats, i = [], 0
    while i < len(order):
        turns = int(torch.randint(1, max_turns + 1, (1,), generator=generator))
        chat = [{"role": "system", "content": system}]
        for j in order[i:i + turns]:
            chat += [{"role": "user", "content": examples[j]["input"]},
                     {"role": "assistant", "content": examples[j]["output"]}]
        chats.append(chat)
        i += turns
    return chats


def encode_chat(chat_tok: ChatTokenizer, messages: Sequence[dict]) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation, and per id: is it part of an assistant reply (content + <eos>)?"""
    ids, mask = [], []
    for m in messages:
        part = chat_tok.encode(render([m]))                 # <|role|>, content..., <eos>
        ids += part
        mask += [False] + [m["role"] == "assistant"] * (len(part) - 1)
    return ids, mask


def chat_rows(chat_tok: ChatTokenizer, conversations: Sequence[Sequence[dict]], block_size: int,
              assistant_only: bool = True) -> list[tuple[list[int], list[int]]]:
    """(tokens, targets) per conversation: target t is id t + 1, or IGNORE where it is not an assistant
    token (assistant_only=True) -- or nowhere (False: the loss on the whole conversation)."""
    rows = []
    for conv in conversations:
        ids, mask = encode_chat(chat_tok, conv)
        if len(ids) - 1 > block_size:
            raise ValueError(f"conversation of {len(ids)} tokens is longer than the context ({block_size})")
        targets = [y if (keep or not assistant_only) else IGNORE for y, keep in zip(ids[1:], mask[1:])]
        rows.append((ids[:-1], targets))
    return rows


def chat_batches(chat_tok: ChatTokenizer, conversations: Sequence[Sequence[dict]], block_size: int,
                 assistant_only: bool = True) -> Batcher:
    rows = chat_rows(chat_tok, conversations, block_size, assistant_only)

    def get_batch(batch_size: int, generator: torch.Generator) -> dict:
        idx = torch.randint(0, len(rows), (batch_size,), generator=generator).tolist()
        return pad_batch([rows[i] for i in idx], chat_tok.pad_id)
    return get_batch


def reply(model: MiniGPT, chat_tok: ChatTokenizer, messages: Sequence[dict], max_new_tokens: int = 6,
          stop: bool = True) -> str:
    """The model's greedy reply after <|assistant|>, up to its <eos> (stop=False: keep generating past it)."""
    ids = chat_tok.encode(render(messages, add_generation_prompt=True))
    if len(ids) + max_new_tokens > model.cfg.block_size:
        raise ValueError(f"{len(ids)} prompt tokens + {max_new_tokens} new exceed the context "
                         f"({model.cfg.block_size})")
    prompt = torch.tensor([ids], device=model.tok_emb.weight.device)
    out = model.generate(prompt, max_new_tokens, stop_token=chat_tok.eos_id if stop else None)[0, len(ids):]
    new = out.tolist()
    if stop and chat_tok.eos_id in new:
        new = new[:new.index(chat_tok.eos_id)]
    return chat_tok.decode(new)


def reply_rows(chat_tok: ChatTokenizer, conversations: Sequence[Sequence[dict]]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids up to the last <|assistant|>, the last reply's ids + <eos>) per conversation."""
    rows = []
    for conv in conversations:
        if conv[-1]["role"] != "assistant":
            raise ValueError("each conversation must end with the assistant's reply to score")
        prompt = chat_tok.encode(render(conv[:-1], add_generation_prompt=True))
        rows.append((prompt, chat_tok.encode(" " + conv[-1]["content"]) + [chat_tok.eos_id]))
    return rows


def exact_replies(model: MiniGPT, chat_tok: ChatTokenizer, conversations: Sequence[Sequence[dict]]) -> float:
    """Share of conversations whose last reply the model gives exactly (greedy), then stops with <eos>."""
    return greedy_match(model, reply_rows(chat_tok, conversations), chat_tok.pad_id).float().mean().item()
