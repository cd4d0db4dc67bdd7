import pytest

from fmlab.tokenizer import Tokenizer


def test_round_trip_known_and_unknown_words(tiny_tok):
    text = "ada lives in zorbville 42 ."
    assert tiny_tok.decode(tiny_tok.encode(text)) == text
    assert tiny_tok.tokens("zorb")[:2] == ["z", "##o"]


def test_any_text_encodes(tiny_tok):
    for text in ["", "   ", "Ünïcödé ☃ 🙂", "a\tb\nc", "<eos>", "x" * 10_000]:
        ids = tiny_tok.encode(text)
        assert all(0 <= i < len(tiny_tok) for i in ids)
        tiny_tok.decode(ids)
    assert tiny_tok.encode("☃") == [tiny_tok.unk_id]
    assert tiny_tok.encode("ADA") == tiny_tok.encode("ada")


def test_eos_and_special_skipping(tiny_tok):
    ids = tiny_tok.encode("the cat", eos=True)
    assert ids[-1] == tiny_tok.eos_id
    assert tiny_tok.decode(ids) == "the cat"
    assert "<eos>" in tiny_tok.decode(ids, skip_special=False)


def test_bad_inputs(tiny_tok):
    with pytest.raises(TypeError):
        tiny_tok.encode(None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tiny_tok.decode([len(tiny_tok)])
    with pytest.raises(ValueError):
        Tokenizer(["a", "b"])


def test_vocabulary_order_is_deterministic():
    texts = ["b a c a", "c c b"]
    assert Tokenizer.train(texts).vocab == Tokenizer.train(list(texts)).vocab
