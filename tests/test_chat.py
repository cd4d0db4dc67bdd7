"""The chat template against Hugging Face's apply_chat_template, and the assistant-only loss mask by hand."""
import pytest
import torch

from fmlab import chat
from fmlab.batches import IGNORE
from fmlab.gpt import GPTConfig, MiniGPT
from fmlab.tokenizer import Tokenizer
from fmlab.train import lm_loss

CONV = [{"role": "system", "content": "you rate food reviews ."},
        {"role": "user", "content": "the bread was sweet ."},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "the cake was stale ."},
        {"role": "assistant", "content": "negative"}]


@pytest.fixture(scope="module")
def chat_tok():
    texts = ["the bread was sweet . verdict : positive .", "the cake was stale . verdict : negative .",
             "you rate food reviews . the system and the user and the assistant ."] * 30
    return chat.ChatTokenizer(Tokenizer.train(texts, n_merges=60, min_count=2))


def _hf_tokenizer(chars: str):
    """A character-level fast tokenizer with our special tokens and chat template (built locally, no download)."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, models, pre_tokenizers
    specials = [*chat.ROLE_TOKENS, "<eos>", "<pad>"]
    vocab = {c: i for i, c in enumerate(sorted(set(chars)) + ["[UNK]"])}
    backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>",
                                              additional_special_tokens=list(chat.ROLE_TOKENS))
    hf.chat_template = chat.CHAT_TEMPLATE
    return hf


def test_render_matches_hugging_face_apply_chat_template():
    hf = _hf_tokenizer(chat.render(CONV))
    assert hf.apply_chat_template(CONV, tokenize=False) == chat.render(CONV)
    prompt = CONV[:4]
    assert hf.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == \
        chat.render(prompt, add_generation_prompt=True)
    assert chat.render(CONV[:2]) == "<|system|> you rate food reviews .<eos><|user|> the bread was sweet .<eos>"


def test_assistant_mask_matches_hugging_face_generation_mask(chat_tok):
    text = chat.render(CONV)
    hf = _hf_tokenizer(text)
    out = hf.apply_chat_template(CONV, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    pieces = hf.convert_ids_to_tokens(out["input_ids"])           # one character, or one special token
    assert "".join(pieces) == text
    starts = [sum(map(len, pieces[:k])) for k in range(len(pieces))]
    hf_chars = {c for p, a, m in zip(pieces, starts, out["assistant_masks"]) if m for c in range(a, a + len(p))}
    ids, mask = chat.encode_chat(chat_tok, CONV)
    ours, pos = set(), 0
    for i, m in zip(ids, mask):                    # characters each of our tokens covers in the rendered text
        n = len(chat_tok.decode([i]))
        if m:
            ours |= set(range(pos, pos + n))
        pos += n
    assert pos == len(text)
    assert ours == hf_chars
    assert "".join(text[c] for c in sorted(ours)) == " positive<eos> negative<eos>"


def test_special_tokens_are_single_ids_and_round_trip(chat_tok):
    base = chat_tok.base
    ids = chat_tok.encode(chat.render(CONV))
    assert ids[0] == chat_tok.role_id["system"] == len(base)
    assert ids.count(chat_tok.role_id["user"]) == 2 and ids.count(chat_tok.role_id["assistant"]) == 2
    assert ids.count(base.eos_id) == 5                       # one end-of-turn per message, the trained <eos>
    assert chat_tok.decode(ids) == chat.render(CONV)
    assert len(chat_tok) == len(base) + 3 and max(ids) < len(chat_tok)


def test_loss_mask_by_hand(chat_tok):
    conv = CONV[:3]
    ids, mask = chat.encode_chat(chat_tok, conv)
    n_sys = len(chat_tok.base.encode(" you rate food reviews .")) + 2      # marker + content + <eos>
    n_user = len(chat_tok.base.encode(" the bread was sweet .")) + 2
    reply = chat_tok.base.encode(" positive") + [chat_tok.eos_id]
    assert ids[n_sys + n_user] == chat_tok.role_id["assistant"]
    assert mask == [False] * (n_sys + n_user + 1) + [True] * len(reply)
    (tokens, targets), = chat.chat_rows(chat_tok, [conv], block_size=64)
    assert tokens == ids[:-1]
    assert targets == [IGNORE] * (n_sys + n_user) + reply           # position t predicts ids[t + 1]
    (_, all_targets), = chat.chat_rows(chat_tok, [conv], block_size=64, assistant_only=False)
    assert all_targets == ids[1:]


def test_masked_positions_never_contribute_to_the_loss(chat_tok):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=len(chat_tok), block_size=64, n_layer=1, n_head=2, n_embd=16))
    batch = chat.chat_batches(chat_tok, [CONV], 64)(2, torch.Generator().manual_seed(0))
    logits = model(batch["tokens"])
    keep = batch["targets"] != IGNORE
    changed = logits.detach().clone()
    changed[~keep] = torch.randn_like(changed[~keep]) * 100          # anything at the masked positions
    torch.testing.assert_close(lm_loss(changed, batch["targets"]), lm_loss(logits.detach(), batch["targets"]))
    per_row = sum(len(chat_tok.base.encode(" " + w)) + 1 for w in ("positive", "negative"))   # replies + <eos>
    assert keep.sum() == 2 * per_row


def test_add_role_tokens_keeps_the_model_and_starts_rows_from_trained_ones(chat_tok):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=len(chat_tok.base), block_size=64, n_layer=1, n_head=2, n_embd=16))
    bigger = chat.add_role_tokens(model, chat_tok)
    assert bigger.cfg.vocab_size == len(chat_tok) and bigger.head.weight is bigger.tok_emb.weight
    x = torch.tensor([chat_tok.base.encode("the bread was sweet .")])
    torch.testing.assert_close(bigger(x)[..., :len(chat_tok.base)], model(x), rtol=0, atol=0)
    user_pieces = chat_tok.base.encode(" user")
    torch.testing.assert_close(bigger.tok_emb.weight[chat_tok.role_id["user"]],
                               model.tok_emb.weight[user_pieces].mean(0))
    with pytest.raises(ValueError, match="ids"):
        chat.add_role_tokens(bigger, chat_tok)


def test_exact_replies_and_conversations(chat_tok):
    examples = [{"input": "the bread was sweet .", "output": "positive"},
                {"input": "the cake was stale .", "output": "negative"}] * 5
    chats = chat.conversations(examples, "you rate food reviews .", 3, torch.Generator().manual_seed(0))
    assert sum((len(c) - 1) // 2 for c in chats) == len(examples)
    assert all(c[0]["role"] == "system" and 1 <= (len(c) - 1) // 2 <= 3 for c in chats)
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=len(chat_tok), block_size=64, n_layer=1, n_head=2, n_embd=16))
    assert 0.0 <= chat.exact_replies(model, chat_tok, chats) <= 1.0
    prompt, answer = chat.reply_rows(chat_tok, chats[:1])[0]
    assert prompt[-1] == chat_tok.role_id["assistant"] and answer[-1] == chat_tok.eos_id
