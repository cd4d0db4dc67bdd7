"""Evaluation metrics for generated text, written out: reference overlap, embeddings, sampling, agreement.

Reference-based (a model's answer against a reference answer):

- `exact_match` -- 1 iff the words equal the reference's.  `token_f1` -- SQuAD's (Rajpurkar et al. 2016)
  F1 of the bag of words: P = |pred ∩ ref| / |pred|, R = |pred ∩ ref| / |ref|, F1 = 2PR / (P + R).
- `bleu` -- Papineni et al. (2002), corpus level: clipped n-gram precisions p_n (each n-gram of a hypothesis
  counts at most as often as in its reference), their geometric mean, times a brevity penalty
  BP = 1 if c > r else exp(1 - r / c) (c, r: total hypothesis and reference length):

      BLEU = BP * exp( sum_{n=1..4} (1/4) log p_n )

  With ``smooth=True`` a zero count of matches at order n is replaced as sacrebleu's default 'exp' method does
  (the mteval-v13a smoothing: the k-th such order gets precision 1 / (2^k * total_n)).
- `rouge_n`, `rouge_l` -- Lin (2004): n-gram overlap and the longest common subsequence (LCS) of prediction
  and reference, reported as the F-measure of precision and recall (rouge-score's ``fmeasure``, beta = 1).
  Tokens as in rouge-score's default tokenizer: lowercase, runs of letters and digits (punctuation dropped).
- `embedding_similarity` -- in the spirit of BERTScore (Zhang et al. 2020): each token of the candidate is
  matched to its most similar reference token by the cosine of their hidden states (and vice versa), the mean
  of the best matches is precision (recall), their harmonic mean F1.

Sampling-based: `pass_at_k` (Chen et al. 2021's unbiased estimator), `majority_vote` (self-consistency,
Wang et al. 2023).  Agreement between raters: `cohens_kappa` (Cohen 1960), `bootstrap_interval` (Efron 1979).
Contamination: `ngram_overlap`, the check GPT-3 ran on its benchmarks (Brown et al. 2020, 13-grams).

Simplifications vs the papers: one reference per example (BLEU and ROUGE allow several); words are split on
white space for BLEU (our texts are already tokenized like sacrebleu's '13a' would); BERTScore uses a large
*bidirectional* encoder (RoBERTa-large, a layer chosen by correlation with human scores), optional idf weights
and a baseline rescaling -- `embedding_similarity` uses the course's 0.9 M-parameter *causal* model (a token sees
only its left context), no idf, no rescaling; GPT-3 flagged 13-gram overlaps, short texts here need shorter n.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import Hashable, Sequence

import torch

from .gpt import MiniGPT, ids_to_device
from .tokenizer import Tokenizer

__all__ = ["words", "exact_match", "token_f1", "ngrams", "bleu", "rouge_tokens", "rouge_n", "lcs_length",
           "rouge_l", "embedding_similarity", "pass_at_k", "majority_vote", "cohens_kappa",
           "bootstrap_interval", "ngram_overlap"]


def words(text: str) -> list[str]:
    """White-space words of a text, without the ``<eos>`` marker that sampled completions carry."""
    return text.replace("<eos>", " ").split()


def exact_match(prediction: str, reference: str) -> float:
    """1.0 iff the prediction's words equal the reference's, else 0.0."""
    return float(words(prediction) == words(reference))


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: harmonic mean of precision and recall of the bag of words."""
    pred, ref = words(prediction), words(reference)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return _f1(overlap, len(pred), len(ref))


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples of n consecutive tokens) of a token list."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4, smooth: bool = True) -> float:
    """Corpus BLEU in [0, 1] (sacrebleu reports 100x this), one reference per hypothesis."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError("bleu needs one reference per hypothesis, and at least one hypothesis")
    matches, totals, c, r = [0] * max_n, [0] * max_n, 0, 0
    for hyp, ref in zip(hypotheses, references):
        h, rf = words(hyp), words(ref)
        c, r = c + len(h), r + len(rf)
        for n in range(1, max_n + 1):
            matches[n - 1] += sum((ngrams(h, n) & ngrams(rf, n)).values())     # clipped counts
            totals[n - 1] += max(len(h) - n + 1, 0)
    if c == 0 or not any(matches):
        return 0.0
    brevity_penalty = 1.0 if c > r else math.exp(1 - r / c)
    log_p, zeros = 0.0, 0
    for m, t in zip(matches, totals):
        if m == 0 and not smooth:
            return 0.0
        if m == 0:                                      # sacrebleu's 'exp': 1 / (2^k * total)
            zeros += 1
        log_p += math.log(m / t if m else 1 / (2 ** zeros * t)) if t else -math.inf
    return brevity_penalty * math.exp(log_p / max_n)


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenization: lowercase, runs of letters and digits."""
    return re.findall(r"[a-z0-9]+", text.replace("<eos>", " ").lower())


def rouge_n(prediction: str, reference: str, n: int = 1) -> float:
    """ROUGE-N F-measure: overlap of n-grams, as precision (over the prediction) and recall (over the reference)."""
    pred, ref = ngrams(rouge_tokens(prediction), n), ngrams(rouge_tokens(reference), n)
    return _f1(sum((pred & ref).values()), sum(pred.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (in order, not necessarily adjacent), by dynamic programming."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag, row[0] = 0, 0
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: P = LCS / |prediction|, R = LCS / |reference|."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    return _f1(lcs_length(pred, ref), len(pred), len(ref))


@torch.no_grad()
def _token_states(model: MiniGPT, tokenizer: Tokenizer, text: str, layer: int) -> torch.Tensor:
    ids = tokenizer.encode(" " + " ".join(words(text)))
    tokens = ids_to_device(torch.tensor([ids]), model)
    states = model.residual_stream(tokens)[layer][0].float()              # (T, C)
    return torch.nn.functional.normalize(states, dim=-1)


def embedding_similarity(model: MiniGPT, tokenizer: Tokenizer, candidate: str, reference: str,
                         layer: int = 2) -> float:
    """BERTScore-style F1: greedy cosine matching of the two texts' token hidden states at `layer`."""
    cand, ref = (_token_states(model, tokenizer, t, layer) for t in (candidate, reference))
    cosine = cand @ ref.T                                                 # (T_cand, T_ref)
    precision = cosine.max(dim=1).values.mean().item()                    # each candidate token's best match
    recall = cosine.max(dim=0).values.mean().item()                       # each reference token's best match
    return 2 * precision * recall / (precision + recall)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k samples is correct, from n samples of which c are (Chen et al. 2021):

        pass@k = 1 - C(n - c, k) / C(n, k),  computed as 1 - prod_{i = n-c+1..n} (1 - k / i)  (no huge binomials)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1 - k / i for i in range(n - c + 1, n + 1))


def majority_vote(answers: Sequence[Hashable]) -> Hashable:
    """The most frequent answer (self-consistency); a tie goes to the answer seen first."""
    if not answers:
        raise ValueError("no answers to vote on")
    counts = Counter(answers)
    return max(answers, key=lambda a: counts[a])        # max keeps the first of equal counts


def cohens_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Agreement of two raters beyond chance: kappa = (p_o - p_e) / (1 - p_e).

    p_o: share of items they label the same; p_e: the share expected by chance from each rater's label
    frequencies, sum over labels of p_a(label) * p_b(label).  1 = perfect, 0 = chance level.
    """
    if len(a) != len(b) or not a:
        raise ValueError("cohens_kappa needs two equally long, non-empty lists of labels")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    p_e = sum(count_a[label] * count_b[label] for label in count_a) / n ** 2
    return 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)


def bootstrap_interval(values: Sequence[float], level: float = 0.95, n_resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the values with replacement, take the quantiles."""
    if not values:
        raise ValueError("no values to resample")
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(n_resamples))
    low = means[int((1 - level) / 2 * n_resamples)]
    high = means[min(n_resamples - 1, int((1 + level) / 2 * n_resamples))]
    return low, high


def ngram_overlap(texts: Sequence[str], corpus: Sequence[str], n: int = 8) -> list[bool]:
    """Per text: does it share any word n-gram with the corpus?  (A benchmark item that does may have leaked.)"""
    seen = {g for doc in corpus for g in ngrams(words(doc), n)}
    return [any(g in seen for g in ngrams(words(t), n)) for t in texts]
