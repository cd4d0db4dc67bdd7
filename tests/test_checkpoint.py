import json

import pytest
import torch

from fmlab import checkpoint
from fmlab.checkpoint import CheckpointError
from fmlab.tokenizer import Tokenizer


def test_round_trip_is_exact(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m", {"note": "hi"})
    model, tok, meta = checkpoint.load(tmp_path / "m.safetensors")
    assert tok.vocab == tiny_tok.vocab and meta == {"note": "hi"}
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()


def test_tampered_file_is_refused(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m")
    f = tmp_path / "m.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        checkpoint.load(f, rebuild_hint="run X")


def test_wrong_vocabulary_or_shape_is_refused(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m")
    other = Tokenizer(tiny_tok.vocab[:3] + list(reversed(tiny_tok.vocab[3:])))
    with pytest.raises(CheckpointError, match="different vocabulary"):
        checkpoint.load(tmp_path / "m", tokenizer=other)
    card = json.loads((tmp_path / "m.json").read_text())
    card["config"]["n_embd"] = 32
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="shapes"):
        checkpoint.load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.load(tmp_path / "nothing", rebuild_hint="rebuild with Y")
