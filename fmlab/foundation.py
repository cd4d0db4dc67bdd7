"""The course's data and its foundation model, loaded in one call each -- as one loads from a model hub.

    python -m fmlab.foundation data    # writes data/: corpora, tasks, tokenizer, manifest.json
    python -m fmlab.foundation model   # pre-trains data/base_model.safetensors with the recipe below
    python -m fmlab.foundation all     # both

Both commands are deterministic on CPU.  Every file under data/ is listed in data/manifest.json with its
size and sha256; loading checks the hash, so a stale or edited file fails loudly and names the command
that rebuilds it, instead of silently giving different numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from functools import lru_cache
from pathlib import Path

import torch

from . import checkpoint, corpus, domain, tasks, world as world_mod
from .batches import encode_corpus, lm_batches
from .checkpoint import CheckpointError, sha256
from .evaluate import fact_recall, perplexity
from .gpt import GPTConfig, MiniGPT
from .tokenizer import Tokenizer
from .train import TrainConfig, train

__all__ = ["data_dir", "load_world", "load_corpus", "load_task", "load_tokenizer", "load_base_model",
           "corpus_stream", "pretrain_config", "base_model_card", "lineage", "PRETRAIN", "BASE_MODEL", "CORPORA",
           "build_data", "build_base_model"]

CORPORA = ("pretrain", "station", "python")
BASE_MODEL = "base_model"
REBUILD_DATA = "rebuild it with `python -m fmlab.foundation data`"
REBUILD_MODEL = "rebuild it with `python -m fmlab.foundation model`"
# The pre-training recipe taught in notebook 01 and used to build the shipped base model: 32 windows of 64
# tokens per step, peak learning rate 3e-3 (fine-tuning recipes stay at 1/10 of it or below, `fmlab.recipes`).
# Measured while choosing it: with 16 windows of 128 tokens (the same tokens per step) the facts of the world
# appeared only after ~500 steps instead of ~350 -- longer windows let the model copy a fact from earlier in
# the document instead of storing it in its weights.
PRETRAIN = TrainConfig(steps=1200, batch_size=32, lr=3e-3, warmup=50, min_lr_ratio=0.1, seed=0)
TOKENIZER_MERGES = 1000    # BPE merges learned on the pre-training corpus (rare ones are not kept)
TOKENIZER_MIN_COUNT = 20   # every token the tokenizer emits occurs at least this often in pre-training


def data_dir() -> Path:
    """$FMLAB_DATA, else the data/ folder beside the fmlab package (the repository's)."""
    root = os.environ.get("FMLAB_DATA")
    return Path(root) if root else Path(__file__).resolve().parent.parent / "data"


def pretrain_config(vocab_size: int) -> GPTConfig:
    """The base model's shape: 4 layers x 4 heads x width 128, context 64 tokens (~0.9 M parameters)."""
    return GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128)


# --- building data/ -----------------------------------------------------------------------------------
def _write(name: str, text: str, manifest: dict) -> None:
    path = data_dir() / name
    path.write_text(text, encoding="utf-8")
    manifest[name] = {"bytes": path.stat().st_size, "sha256": sha256(path)}


def build_data() -> dict:
    """Generate every corpus and task from fixed seeds, train the tokenizer, write them all to data/."""
    import sys
    import warnings
    if sys.version_info[:2] != domain.PYTHON_BUILT_WITH:
        warnings.warn(f"the shipped data/ was built with Python {'.'.join(map(str, domain.PYTHON_BUILT_WITH))}, whose "
                      "language reference (pydoc_data) differs from this one's: the rebuilt corpora, tokenizer and base "
                      "model will differ from the shipped ones", stacklevel=2)
    data_dir().mkdir(parents=True, exist_ok=True)
    w = world_mod.make_world(seed=0)
    corpora = {"pretrain": corpus.pretraining_corpus(w), "station": domain.station_corpus(),
               "python": domain.python_corpus()}
    all_tasks = {t: tasks.make_task(w, t) for t in tasks.TASKS}
    all_tasks["triage"] = domain.triage_task()
    manifest = _read_manifest(missing_ok=True).get("files", {})
    manifest = {k: v for k, v in manifest.items() if k.startswith(BASE_MODEL)}
    world_json = {"people": w.people, "facts": w.facts, "toki": w.toki}
    _write("world.json", json.dumps(world_json, indent=1), manifest)
    for name, docs in corpora.items():
        _write(f"{name}.txt", "\n".join(docs) + "\n", manifest)
    _write("tasks.json", json.dumps(all_tasks), manifest)
    tokenizer = Tokenizer.train(corpora["pretrain"], TOKENIZER_MERGES, TOKENIZER_MIN_COUNT)
    _write("tokenizer.json", tokenizer.to_json(), manifest)
    _write_manifest(manifest)
    return manifest


def _read_manifest(missing_ok: bool = False) -> dict:
    path = data_dir() / "manifest.json"
    if not path.exists():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"{path} is missing; {REBUILD_DATA}")
    return json.loads(path.read_text())


def _write_manifest(files: dict) -> None:
    body = {"note": "sizes and sha256 of every file in data/; written by python -m fmlab.foundation",
            "files": dict(sorted(files.items()))}
    (data_dir() / "manifest.json").write_text(json.dumps(body, indent=1) + "\n")


@lru_cache(maxsize=None)
def _verified_text(name: str) -> str:
    path = data_dir() / name
    entry = _read_manifest().get("files", {}).get(name)
    if not path.exists() or entry is None:
        raise FileNotFoundError(f"data file {path} is missing; {REBUILD_DATA}")
    if sha256(path) != entry["sha256"]:
        raise CheckpointError(f"data file {path} does not match its sha256 in data/manifest.json; "
                              f"{REBUILD_DATA}")
    return path.read_text(encoding="utf-8")


# --- loading ------------------------------------------------------------------------------------------
def load_world() -> world_mod.World:
    info = json.loads(_verified_text("world.json"))
    return world_mod.World(people=info["people"], facts=info["facts"], toki=info["toki"])


def load_corpus(name: str) -> list[str]:
    """Documents of a corpus: 'pretrain' (the world), 'station' (jargon domain), 'python' (real text)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return _verified_text(f"{name}.txt").splitlines()


def load_task(name: str) -> dict[str, list[dict]]:
    """Splits {'train', 'val', 'test'[, 'ood']} of a task: sentiment, translate, summarize, qa, triage."""
    all_tasks = json.loads(_verified_text("tasks.json"))
    if name not in all_tasks:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(all_tasks)}")
    return all_tasks[name]


def load_tokenizer() -> Tokenizer:
    """The course's byte-level BPE tokenizer, learned on the pre-training corpus."""
    return Tokenizer.from_json(_verified_text("tokenizer.json"))


@lru_cache(maxsize=None)
def _stream_cached(name: str, split: str) -> torch.Tensor:
    docs = load_corpus(name)
    n_val = max(1, len(docs) // 20)                 # the last 5 % of documents are held out
    docs = docs[:-n_val] if split == "train" else docs[-n_val:]
    return encode_corpus(load_tokenizer(), docs)


def corpus_stream(name: str, split: str = "train") -> torch.Tensor:
    """A corpus as one token stream; split 'train' (95 % of documents) or 'val' (the held-out 5 %)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return _stream_cached(name, split).clone()


def load_base_model(device: torch.device | str = "cpu") -> tuple[MiniGPT, Tokenizer]:
    """The course's pre-trained foundation model and its tokenizer, checked against data/manifest.json."""
    entry = _read_manifest().get("files", {}).get(f"{BASE_MODEL}.safetensors")
    if entry is None:
        raise CheckpointError(f"data/{BASE_MODEL}.safetensors is not in the manifest; {REBUILD_MODEL}")
    path = data_dir() / f"{BASE_MODEL}.safetensors"
    model, tokenizer, _ = checkpoint.load(path, device, rebuild_hint=REBUILD_MODEL, expected_sha256=entry["sha256"])
    if tokenizer != load_tokenizer():
        raise CheckpointError(f"{path} was trained with another tokenizer than data/tokenizer.json; {REBUILD_MODEL}")
    return model, tokenizer


def base_model_card() -> dict:
    """The base model's metadata: recipe, training log, final metrics, data lineage, machine."""
    return json.loads((data_dir() / f"{BASE_MODEL}.json").read_text())["meta"]


def lineage(*names: str) -> dict[str, str]:
    """{data file: sha256} for the files of data/ a model was trained on -- recorded in its checkpoint."""
    files = _read_manifest().get("files", {})
    missing = [n for n in names if n not in files]
    if missing:
        raise ValueError(f"not in data/manifest.json: {missing}; choose from {sorted(files)}")
    return {n: files[n]["sha256"] for n in names}


# --- building the base model --------------------------------------------------------------------------
def build_base_model(cfg: TrainConfig = PRETRAIN) -> dict:
    """Pre-train the foundation model on CPU from seed 0 and write it (deterministic) to data/."""
    torch.manual_seed(0)
    torch.set_num_threads(1)          # one thread: the same bits on every machine we tried
    tokenizer = load_tokenizer()
    model = MiniGPT(pretrain_config(len(tokenizer)))
    probes, val = world_mod.fact_cloze(load_world()), corpus_stream("pretrain", "val")
    evals = {"val_perplexity": lambda m: perplexity(m, val), "fact_recall": lambda m: fact_recall(m, tokenizer, probes)}
    cfg = dataclasses.replace(cfg, eval_every=100)
    history = train(model, lm_batches(corpus_stream("pretrain"), model.cfg.block_size), cfg, evals=evals)
    log = history.dropna(subset=["val_perplexity"])[["step", "loss", "seconds", "val_perplexity", "fact_recall"]]
    meta = {"recipe": dataclasses.asdict(cfg), "params": model.num_params(),
            "log": log.round(4).to_dict(orient="records"),
            "val_perplexity": float(log["val_perplexity"].iloc[-1]), "fact_recall": float(log["fact_recall"].iloc[-1]),
            "train_seconds": float(history["seconds"].iloc[-1]),
            "data": lineage("pretrain.txt", "tokenizer.json"),
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
                       f"torch {torch.__version__}, 1 thread",
            "built": time.strftime("%Y-%m-%d")}
    path = data_dir() / f"{BASE_MODEL}.safetensors"
    checkpoint.save(model, tokenizer, path, meta)
    manifest = _read_manifest().get("files", {})
    for f in (path, path.with_suffix(".json")):
        manifest[f.name] = {"bytes": f.stat().st_size, "sha256": sha256(f)}
    _write_manifest(manifest)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fmlab.foundation", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["data", "model", "all"])
    args = parser.parse_args(argv)
    if args.what in ("data", "all"):
        files = build_data()
        print(f"wrote {len(files)} files to {data_dir()}")
    if args.what in ("model", "all"):
        meta = build_base_model()
        print(f"base model: val perplexity {meta['val_perplexity']:.3f}, fact recall "
              f"{meta['fact_recall']:.2f}, {meta['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
