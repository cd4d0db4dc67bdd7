"""From fmlab to Hugging Face and back: the course's MiniGPT as a `transformers` GPT-2 checkpoint folder.

    folder = hf.export(model, tokenizer, "minigpt-hf")        # config.json, model.safetensors, tokenizer.json, ...
    gpt2 = GPT2LMHeadModel.from_pretrained(folder)     # plain transformers, offline
    model, tokenizer = hf.load(folder)                        # back into fmlab (a MiniGPT and fmlab's tokenizer)

**The model.** MiniGPT *is* GPT-2's architecture (`fmlab.gpt`), so its weights map one to one:

    MiniGPT                          GPT2LMHeadModel
    tok_emb, pos_emb                 transformer.wte, transformer.wpe
    blocks.i.ln1, ln2                transformer.h.i.ln_1, ln_2
    blocks.i.attn.qkv, attn.proj     transformer.h.i.attn.c_attn, attn.c_proj    (Conv1D: weight stored (in, out))
    blocks.i.mlp.fc, mlp.proj        transformer.h.i.mlp.c_fc, mlp.c_proj        (Conv1D: weight stored (in, out))
    ln_f, head (tied to tok_emb)     transformer.ln_f, lm_head (tied to wte)

One real difference: GPT-2's MLP uses the tanh approximation of GELU (``gelu_new``), MiniGPT the exact GELU
(erf).  The exported config says ``activation_function="gelu"`` (exact), so both compute the same function and
the logits agree to float rounding (tests: 1e-5).  `from_gpt2` refuses a checkpoint with another activation
instead of silently computing something else.  With dropout > 0 GPT-2 also drops after the embeddings and the
attention projection; in eval mode (and at the course's dropout 0) the two are identical.

**The tokenizer.**  The exported tokenizer is a `tokenizers` pipeline of the GPT-2 kind: a `Split` with fmlab's
pattern (`SPLIT_REGEX`: `tokenizer.SPLIT_PATTERN` with Unicode classes equal to Python's ``\\w \\d \\s``), GPT-2's
byte-to-character table (`ByteLevel`), and a BPE model whose ids are fmlab's ids: bytes, kept merges, then
``<eos>`` and ``<pad>``.  Its merges are fmlab's merges, in fmlab's order, that join two emitted tokens into an
emitted token; ``ignore_merges`` emits a word that is itself a token whole (fmlab does the same, checked for
every token).

What no BPE can express: fmlab applies *every* learned merge, then splits a merged token that pre-training
used fewer than 20 times (not "kept") back into its halves.  A BPE has no undo, and the rule is not local:
fmlab gives ``" thin" -> " th" "in"`` but ``" third" -> " t" "h" "i" "r" "d"``.  In " thin", " th" must be
made from " t"+"h" or " "+"th"; the first merge would also join " t"+"h" in " third" (they stay neighbours
there), the second needs "t"+"h" merged before " "+"t", which splits " third" differently.  So the words of
the course where BPE with these merges disagrees with fmlab (about a tenth of its distinct words) are listed
as *exceptions*: one more `Split`, after the byte mapping, cuts exactly those whole words at fmlab's token
boundaries (a regex anchored at the start of the word).  Result: the same ids as fmlab on every text of the
course (tested on all corpora, tasks and prompts); on other text, words outside the exception list can differ
(measured in the tests and in notebook 11).  Also different by design: the texts ``<eos>`` and ``<pad>`` are
read as the special tokens (Hugging Face's convention, which TRL relies on), where fmlab reads them as
characters.

Simplifications: GPT-2 has no <pad> token and 50 257 ids; our BPE keeps fmlab's ~900.  The exceptions are
computed from the texts given to `fast_tokenizer` (default: the course's texts, `course_texts`).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import torch

from . import lora
from .gpt import GPTConfig, MiniGPT
from .params import device_of
from .tokenizer import EOS, PAD, SPLIT_PATTERN, Tokenizer

__all__ = ["SPLIT_REGEX", "gpt2_config", "to_gpt2", "from_gpt2", "fast_tokenizer", "export", "load",
           "course_texts", "byte_to_char", "loss_log"]

# fmlab's split pattern for Oniguruma (the regex engine of `tokenizers`).  Python's str classes are
# \w = letters, numbers and "_" (Unicode categories L*, N*), \d = decimal digits (Nd), \s = Zs plus these controls.
_SPACE = r"\p{Zs}\t\n\x0B\f\r\x1C-\x1F\x{85}\x{2028}\x{2029}"
SPLIT_REGEX = (r"'(?:[sdmt]|ll|ve|re)"
               r"| ?[\p{L}\p{Nl}\p{No}_]+"                 # [^\W\d]: word characters that are not digits
               r"| ?\p{Nd}{1,3}"                           # \d{1,3}
               rf"| ?[^\p{{L}}\p{{N}}_{_SPACE}]"           # [^\s\w]: one punctuation character or symbol
               rf"|[{_SPACE}]+(?![^{_SPACE}])"             # \s+(?!\S)
               rf"|[{_SPACE}]+")
FMLAB_TOKENIZER = "fmlab_tokenizer.json"   # fmlab's own tokenizer, exported beside the HF one for the way back
_BLOCK = (("ln1", "ln_1", False), ("attn.qkv", "attn.c_attn", True), ("attn.proj", "attn.c_proj", True),
          ("ln2", "ln_2", False), ("mlp.fc", "mlp.c_fc", True), ("mlp.proj", "mlp.c_proj", True))


# --- the model ----------------------------------------------------------------------------------------
def _names(n_layer: int) -> list[tuple[str, str, bool]]:
    """(MiniGPT name, GPT2LMHeadModel name, transposed?) for every tensor."""
    names = [("tok_emb.weight", "transformer.wte.weight", False), ("pos_emb.weight", "transformer.wpe.weight", False)]
    for i in range(n_layer):
        for ours, theirs, conv1d in _BLOCK:
            names.append((f"blocks.{i}.{ours}.weight", f"transformer.h.{i}.{theirs}.weight", conv1d))
            names.append((f"blocks.{i}.{ours}.bias", f"transformer.h.{i}.{theirs}.bias", False))
    return names + [("ln_f.weight", "transformer.ln_f.weight", False), ("ln_f.bias", "transformer.ln_f.bias", False)]


def _plain_state(model: MiniGPT) -> dict[str, torch.Tensor]:
    """MiniGPT's tensors; a model with LoRA adapters must have them merged (then it is a plain GPT-2)."""
    if not all(layer.merged for layer in lora.lora_layers(model).values()):
        raise ValueError("this model carries unmerged LoRA adapters; call lora.merge(model) first -- "
                         "a merged model is an ordinary GPT-2")
    return lora.base_state(model)


def gpt2_config(cfg: GPTConfig, tokenizer: Tokenizer):
    """The transformers GPT2Config of a MiniGPT config (exact GELU; fmlab's <eos> and <pad> ids)."""
    from transformers import GPT2Config
    return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                      n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=4 * cfg.n_embd, activation_function="gelu",
                      resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                      layer_norm_epsilon=1e-5, bos_token_id=tokenizer.eos_id, eos_token_id=tokenizer.eos_id,
                      pad_token_id=tokenizer.pad_id, tie_word_embeddings=True)


def to_gpt2(model: MiniGPT, tokenizer: Tokenizer):
    """A `transformers.GPT2LMHeadModel` computing the same logits as `model` (a copy, on the model's device)."""
    from transformers import GPT2LMHeadModel
    if model.cfg.vocab_size != len(tokenizer):
        raise ValueError(f"model has {model.cfg.vocab_size} token embeddings, tokenizer {len(tokenizer)} ids")
    state = _plain_state(model)
    gpt2 = GPT2LMHeadModel(gpt2_config(model.cfg, tokenizer))
    theirs = gpt2.state_dict()
    with torch.no_grad():
        for ours, name, conv1d in _names(model.cfg.n_layer):
            w = state.get(ours)
            if w is None:                                   # bias=False in fmlab: GPT-2 always has biases
                theirs[name].zero_()
                continue
            theirs[name].copy_(w.t() if conv1d else w)
    gpt2.load_state_dict(theirs)
    gpt2.tie_weights()
    return gpt2.to(device_of(model)).eval()


def from_gpt2(gpt2) -> MiniGPT:
    """A MiniGPT with the weights of a GPT2LMHeadModel (e.g. one fine-tuned with TRL, or `merge_and_unload`ed)."""
    c = gpt2.config
    checks = {"activation_function": (c.activation_function, "gelu"),
              "n_inner": (c.n_inner or 4 * c.n_embd, 4 * c.n_embd), "layer_norm_epsilon": (c.layer_norm_epsilon, 1e-5),
              "scale_attn_by_inverse_layer_idx": (c.scale_attn_by_inverse_layer_idx, False),
              "tie_word_embeddings": (c.tie_word_embeddings, True)}
    bad = {k: got for k, (got, want) in checks.items() if got != want}
    if bad:
        raise ValueError(f"MiniGPT cannot compute this GPT-2 exactly: {bad} (MiniGPT: exact GELU, 4x MLP, "
                         "LayerNorm eps 1e-5, tied embeddings)")
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, dropout=float(c.resid_pdrop))
    model = MiniGPT(cfg)
    theirs = gpt2.state_dict()
    state = {ours: (theirs[name].t() if conv1d else theirs[name]).detach().clone()
             for ours, name, conv1d in _names(cfg.n_layer)}
    model.load_state_dict(state, strict=False)                  # head.weight is tied to tok_emb.weight
    return model.to(device_of(gpt2)).eval()


# --- the tokenizer ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's table: each byte as one printable character (a space is 'Ġ'), as `ByteLevel` maps them."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(extra)}}


def _chars(data: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in data)


def _bpe_parts(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (fmlab's ids) and the merges of fmlab's order that join two emitted tokens into one."""
    vocab = {_chars(p): i for i, p in enumerate(tokenizer.pieces)} | {EOS: tokenizer.eos_id, PAD: tokenizer.pad_id}
    internal = [bytes([i]) for i in range(256)]
    for a, b in tokenizer.merges:
        internal.append(internal[a] + internal[b])
    emitted = set(tokenizer.pieces)
    merges = [(_chars(internal[a]), _chars(internal[b])) for a, b in tokenizer.merges
              if internal[a] in emitted and internal[b] in emitted and internal[a] + internal[b] in emitted]
    return vocab, merges


def _trie(entries: Iterable[tuple[str, str]]) -> str:
    """A regex matching `piece` where it is followed by `rest` and the end of the word, for each entry."""
    root: dict = {}
    for piece, rest in entries:
        node = root
        for ch in piece:
            node = node.setdefault(ch, {})
        node.setdefault("", set()).add(rest)

    def emit(node: dict) -> str:
        alts = []
        if "" in node:
            rests = sorted(node[""], key=lambda r: (-len(r), r))
            alts.append("(?=(?:" + "|".join(re.escape(r) for r in rests) + r")\z)")
        alts += [re.escape(ch) + emit(node[ch]) for ch in sorted(k for k in node if k)]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    return emit(root) if root else "(?!)"


def _exception_regex(words: dict[bytes, list[bytes]]) -> str:
    """Cut each word (bytes -> fmlab's pieces) at fmlab's boundaries; runs after the byte mapping.

    The first piece matches at the word's start (\\A) when the whole rest of the word follows.  Each later
    piece matches where the previous match ended (\\G); a suffix shared by two exceptions but cut differently
    is disambiguated by a look-behind to the start of the word.
    """
    first, later = set(), {}
    for word, pieces in words.items():
        first.add((_chars(pieces[0]), _chars(word[len(pieces[0]):])))
        pos = len(pieces[0])
        for p in pieces[1:]:
            later.setdefault(word[pos:], set()).add((word[:pos], p))
            pos += len(p)
    plain, context = set(), []
    for suffix, cuts in later.items():
        if len({p for _, p in cuts}) == 1:
            piece = next(iter(cuts))[1]
            if piece != suffix:
                plain.add((_chars(piece), _chars(suffix[len(piece):])))
        else:
            context += [rf"(?<=\A{re.escape(_chars(pre))}){re.escape(_chars(p))}(?={re.escape(_chars(suffix[len(p):]))}\z)"
                        for pre, p in sorted(cuts)]
    return r"\A" + _trie(first) + r"|\G(?<=.)(?:" + "|".join(context + [_trie(plain)]) + ")"


def _core(tokenizer: Tokenizer, exceptions: dict[bytes, list[bytes]] | None = None):
    from tokenizers import AddedToken, Regex, Tokenizer as Core, decoders, models, pre_tokenizers
    vocab, merges = _bpe_parts(tokenizer)
    core = Core(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    steps = [pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    if exceptions:
        steps.append(pre_tokenizers.Split(Regex(_exception_regex(exceptions)), behavior="isolated"))
    core.pre_tokenizer = pre_tokenizers.Sequence(steps)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(EOS, special=True, normalized=False),
                             AddedToken(PAD, special=True, normalized=False)])
    return core


def _words(texts: Iterable[str]) -> list[str]:
    return sorted({w for t in texts for w in SPLIT_PATTERN.findall(t)})


@lru_cache(maxsize=1)
def _course_words() -> tuple[str, ...]:
    return tuple(_words(course_texts()))


def _exceptions(tokenizer: Tokenizer, texts: Iterable[str] | None, extra: Iterable[str]) -> dict[bytes, list[bytes]]:
    """The words of `texts` and `extra` where BPE with the kept merges disagrees with fmlab: word -> its pieces."""
    words = sorted((set(_course_words()) if texts is None else set(_words(texts))) | set(_words(extra)))
    plain = _core(tokenizer)
    out = {}
    for word, enc in zip(words, plain.encode_batch(words, add_special_tokens=False)):
        ids = tokenizer.encode(word)
        if enc.ids != ids:
            out[word.encode()] = [tokenizer.pieces[i] for i in ids]
    return out


def fast_tokenizer(tokenizer: Tokenizer, texts: Iterable[str] | None = None, block_size: int = 64,
                   extra: Iterable[str] = ()):
    """fmlab's tokenizer as a `transformers` PreTrainedTokenizerFast (same ids on `texts`, see the docstring).

    texts: the texts whose words must get fmlab's exact ids (default: every text of the course; [] for none).
    extra: more texts whose words must get them too (e.g. sampled answers with made-up words).
    """
    from transformers import PreTrainedTokenizerFast
    core = _core(tokenizer, _exceptions(tokenizer, texts, extra))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD, bos_token=EOS,
                                   model_max_length=block_size, padding_side="right",
                                   clean_up_tokenization_spaces=False)


def course_texts() -> list[str]:
    """Every text of the course: the three corpora, every split of every task (prompts and answers), the
    preference prompts and `corpus.LEARNER_PROMPTS`."""
    from . import corpus, foundation, preference, tasks, world
    texts = [doc for name in foundation.CORPORA for doc in foundation.load_corpus(name)]
    all_tasks = json.loads((foundation.data_dir() / "tasks.json").read_text())
    for splits in all_tasks.values():
        for examples in splits.values():
            texts += [f"{tasks.format_prompt(ex)} {ex['output']}" for ex in examples]
    texts += [p["prompt"] for p in preference.make_prompts(list(world.NAMES))]
    return texts + list(corpus.LEARNER_PROMPTS)


def loss_log(live=None, every: int = 10):
    """A transformers `TrainerCallback` keeping the training loss of every logged step in ``.history`` (a
    DataFrame like `fmlab.train.train`'s: step, loss; row 0 before training) and redrawing `live` (a
    `plots.LiveCurve`) every `every` steps -- so a Trainer's run shows the course's live curve."""
    import pandas as pd
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def __init__(self):
            self.rows = [{"step": 0, "loss": float("nan")}]

        @property
        def history(self) -> pd.DataFrame:
            return pd.DataFrame(self.rows)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.rows.append({"step": state.global_step, "loss": float(logs["loss"])})
                if live is not None and (state.global_step % every == 0 or state.global_step == state.max_steps):
                    live.update(self.history)
    return LossLog()


# --- folders ------------------------------------------------------------------------------------------
def export(model: MiniGPT, tokenizer: Tokenizer, folder: str | Path, texts: Sequence[str] | None = None) -> Path:
    """Write `model` and `tokenizer` as a Hugging Face checkpoint folder (`save_pretrained` format); returns it.

    Beside config.json, model.safetensors, tokenizer.json and tokenizer_config.json it writes
    fmlab_tokenizer.json (fmlab's exact tokenizer), so `load` gives back exactly what was exported.
    """
    folder = Path(folder)
    to_gpt2(model, tokenizer).save_pretrained(folder)
    fast_tokenizer(tokenizer, texts, model.cfg.block_size).save_pretrained(folder)
    (folder / FMLAB_TOKENIZER).write_text(tokenizer.to_json())
    return folder


def load(folder: str | Path, device: torch.device | str = "cpu") -> tuple[MiniGPT, Tokenizer]:
    """(MiniGPT, fmlab Tokenizer) from a folder written by `export` (the model may since have been trained)."""
    from transformers import GPT2LMHeadModel
    folder = Path(folder)
    if not (folder / FMLAB_TOKENIZER).exists():
        raise FileNotFoundError(f"{folder / FMLAB_TOKENIZER} is missing: fmlab reads back folders written by "
                                "hf.export (a Hugging Face BPE alone does not carry fmlab's kept-token rule)")
    tokenizer = Tokenizer.from_json((folder / FMLAB_TOKENIZER).read_text())
    model = from_gpt2(GPT2LMHeadModel.from_pretrained(folder))
    if model.cfg.vocab_size != len(tokenizer):
        raise ValueError(f"{folder}: the model has {model.cfg.vocab_size} token embeddings, "
                         f"the tokenizer {len(tokenizer)}")
    return model.to(device), tokenizer
