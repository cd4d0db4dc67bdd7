"""fmlab.metrics against reference libraries (sacrebleu, rouge-score), brute force and hand-computed values;
fmlab.judge's order invariance."""
import itertools
import math

import pytest
import torch

from fmlab import judge, metrics
from fmlab.gpt import GPTConfig, MiniGPT

# summaries in the course's style: exact, paraphrased, one fact wrong, short, empty overlap, repeated words
HYPOTHESES = ["ivo went to lima and bought cheese .", "in lima , ivo bought cheese .",
              "ivo went to rome and bought cheese .", "gus met jade .", "the sky was grey .",
              "ben ben ben went to quito and saw a cat in the park .", "nia went to quito and met gus and jade ."]
REFERENCES = ["ivo went to lima and bought cheese .", "ivo went to lima and bought cheese .",
              "ivo went to lima and bought cheese .", "gus went to lima and met jade .",
              "ben went to quito and saw a cat .", "ben went to quito and saw a cat .",
              "nia went to quito and met gus ."]


@pytest.mark.parametrize("smooth", [True, False])
def test_corpus_bleu_equals_sacrebleu(smooth):
    sacrebleu = pytest.importorskip("sacrebleu")
    method = "exp" if smooth else "none"
    for hyps, refs in [(HYPOTHESES, REFERENCES), (HYPOTHESES[:3], REFERENCES[:3]), (HYPOTHESES[3:], REFERENCES[3:])]:
        expected = sacrebleu.corpus_bleu(hyps, [refs], smooth_method=method, tokenize="none").score / 100
        assert metrics.bleu(hyps, refs, smooth=smooth) == pytest.approx(expected, abs=1e-9)


def test_sentence_bleu_equals_sacrebleu_without_effective_order():
    sacrebleu = pytest.importorskip("sacrebleu")
    scorer = sacrebleu.BLEU(tokenize="none", smooth_method="exp", effective_order=False)
    for hyp, ref in zip(HYPOTHESES, REFERENCES):
        assert metrics.bleu([hyp], [ref]) == pytest.approx(scorer.sentence_score(hyp, [ref]).score / 100, abs=1e-9)
    # sacrebleu's default '13a' tokenizer splits "," and "." off words; our texts are split already
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score / 100
    assert metrics.bleu(HYPOTHESES, REFERENCES) == pytest.approx(expected, abs=1e-9)


def test_bleu_known_values():
    assert metrics.bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(1.0)
    assert metrics.bleu(["x y z w"], ["a b c d"]) == 0.0
    # all n-grams right but half the length: precisions 1, brevity penalty exp(1 - 8/4)
    assert metrics.bleu(["a b c d"], ["a b c d e f g h"]) == pytest.approx(math.exp(-1.0))
    with pytest.raises(ValueError):
        metrics.bleu(["a"], [])


def test_rouge_equals_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    for hyp, ref in zip(HYPOTHESES + ["", "ivo"], REFERENCES + ["ivo went", ""]):
        s = scorer.score(ref, hyp)                          # rouge-score takes (target, prediction)
        assert metrics.rouge_n(hyp, ref, 1) == pytest.approx(s["rouge1"].fmeasure, abs=1e-12)
        assert metrics.rouge_n(hyp, ref, 2) == pytest.approx(s["rouge2"].fmeasure, abs=1e-12)
        assert metrics.rouge_l(hyp, ref) == pytest.approx(s["rougeL"].fmeasure, abs=1e-12)


def test_lcs_and_f1_by_hand():
    assert metrics.lcs_length("a b c d e".split(), "a c e x".split()) == 3
    assert metrics.lcs_length([], ["a"]) == 0
    # 5 words predicted, 7 in the reference, 4 shared: P = 4/5, R = 4/7
    assert metrics.token_f1("in lima ivo bought cheese", "ivo went to lima and bought cheese") == \
        pytest.approx(2 * (4 / 5) * (4 / 7) / (4 / 5 + 4 / 7))
    assert metrics.token_f1("paris <eos>", "paris") == 1.0 and metrics.exact_match(" paris <eos>", "paris") == 1.0
    assert metrics.token_f1("lima", "paris") == 0.0 and metrics.exact_match("paris .", "paris") == 0.0


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_a_brute_force_count(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
            assert metrics.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError):
        metrics.pass_at_k(3, 4, 1)


def test_pass_at_1_is_the_share_correct():
    assert metrics.pass_at_k(200, 37, 1) == pytest.approx(37 / 200)


def test_majority_vote():
    assert metrics.majority_vote(["a", "b", "b", "c"]) == "b"
    assert metrics.majority_vote(["x", "y"]) == "x"         # a tie goes to the first seen


def test_cohens_kappa_by_hand():
    # 10 items: 7 agreements; rater a says yes 6 times, rater b 5 times -> p_e = 0.6*0.5 + 0.4*0.5 = 0.5
    a = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    b = [1, 1, 1, 1, 0, 0, 1, 0, 0, 0]
    assert metrics.cohens_kappa(a, b) == pytest.approx((0.7 - 0.5) / (1 - 0.5))
    assert metrics.cohens_kappa(a, a) == 1.0
    assert metrics.cohens_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)


def test_bootstrap_interval_covers_the_mean_and_narrows():
    values = [1.0] * 30 + [0.0] * 70
    low, high = metrics.bootstrap_interval(values, seed=1)
    assert low < 0.3 < high
    wide = metrics.bootstrap_interval(values[::10], seed=1)
    assert wide[1] - wide[0] > high - low


def test_ngram_overlap_flags_only_shared_ngrams():
    corpus = ["instruction : answer the question . input : where does ada live ? answer : paris"]
    flags = metrics.ngram_overlap(["where does ada live ? answer : paris", "where does ben live ? answer : lima"],
                                  corpus, n=6)
    assert flags == [True, False]


def test_embedding_similarity_is_one_for_identical_texts(tiny_model, tiny_tok):
    same = metrics.embedding_similarity(tiny_model, tiny_tok, "ada lives in paris .", "ada lives in paris .")
    assert same == pytest.approx(1.0, abs=1e-5)
    other = metrics.embedding_similarity(tiny_model, tiny_tok, "the cat sat", "ada lives in paris .")
    assert other < same


def test_judging_both_orders_does_not_depend_on_the_order(tiny_tok):
    torch.manual_seed(0)      # a tiny random judge with room for byte-level prompts
    tiny_judge = MiniGPT(GPTConfig(vocab_size=len(tiny_tok), block_size=256, n_layer=1, n_head=2, n_embd=16))
    prompts, a, b = ["ada ."] * 3, ["the cat sat .", "ada lives in paris .", "mat"], ["paris .", "the mat", "ada"]
    p_ab = judge.both_orders(tiny_judge, tiny_tok, prompts, a, b)
    p_ba = judge.both_orders(tiny_judge, tiny_tok, prompts, b, a)
    torch.testing.assert_close(p_ab, 1 - p_ba)
    single = judge.prefers_first(tiny_judge, tiny_tok, prompts, a, b)
    assert ((single > 0) & (single < 1)).all()


def test_judge_examples_balance_positions():
    pairs = {"prompts": [{"prompt": "tell me about ada ."}] * 200, "chosen_text": ["good ."] * 200,
             "rejected_text": ["bad ."] * 200}
    examples = judge.judge_examples(pairs, seed=0)
    firsts = sum(ex["output"] == "1" for ex in examples)
    assert 70 < firsts < 130
    assert all(("good . answer 2" in ex["input"]) == (ex["output"] == "1") for ex in examples)
