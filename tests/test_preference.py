import pytest
import torch

from fmlab import preference, rollout


def test_rubric_parts_follow_the_stated_rubric():
    good = preference.rubric_parts("ada", "ada likes to eat soup . ada smiled . <eos>")
    assert good == {"on_topic": 1.0, "polite": 1.0, "concise": 1.0, "fluent": 1.0}
    off = preference.rubric_parts("ada", "ben likes to eat soup . in toki , the word cat is kalo . ben")
    assert off["on_topic"] == 0.0 and off["concise"] == 0.0
    rude = preference.rubric_parts("ada", "ada tried the soup . it was awful . ada frowned .")
    assert rude["polite"] == -1.0 and rude["on_topic"] == pytest.approx(2 / 3)
    assert preference.rubric_parts("ada", "")["on_topic"] == 0.0
    assert preference.rubric("ada", "ada smiled . <eos>") > preference.rubric("ada", "ben frowned . ben")
    assert preference.ties(["ada"] * 2, ["ada smiled .", "ben"], ["ada was happy .", "ada smiled ."]).tolist() == [True, False]


def test_labeller_noise_and_determinism():
    a, b = ["ada smiled . <eos>"] * 400, ["ben frowned . ben was"] * 400
    people = ["ada"] * 400
    exact = preference.label_pairs(people, a, b, preference.LabellerConfig(noise=0.0))
    assert exact.all()
    noisy = preference.label_pairs(people, a, b, preference.LabellerConfig(noise=5.0))
    assert 0.4 < noisy.float().mean() < 0.8
    again = preference.label_pairs(people, a, b, preference.LabellerConfig(noise=5.0))
    assert torch.equal(noisy, again)


def test_make_pairs_orients_and_drops_twins(model, tok):
    prompts = [{"prompt": "who is ben ?", "person": "ben"}] * 8
    g = torch.Generator().manual_seed(0)
    ra, rb = rollout.sample(model, tok, prompts, 4, generator=g), rollout.sample(model, tok, prompts, 4, generator=g)
    rb.texts[0], rb.tokens[0], rb.length[0] = ra.texts[0], ra.tokens[0], ra.length[0]   # an identical twin
    prefers_a = torch.tensor([True, False] * 4)
    pairs = preference.make_pairs(ra, rb, prefers_a)
    assert len(pairs["chosen"]) == 7
    assert pairs["chosen_text"][0] == rb.texts[1] and pairs["rejected_text"][0] == ra.texts[1]
    assert len(preference.make_pairs(ra, rb, prefers_a, keep=torch.arange(8) < 4)["chosen"]) == 3
    batch = preference.pair_batch(pairs, [0, 1], tok.pad_id)
    assert batch["tokens"].shape[0] == 4
    assert batch["tokens"][0, :batch["length"][0]].tolist() == pairs["chosen"][0]
    assert batch["tokens"][2, :batch["length"][2]].tolist() == pairs["rejected"][0]


def test_distinct_win_rate_and_prompt_errors():
    assert preference.distinct_n(["a b c", "a b c"]) == 0.5
    assert preference.distinct_n(["a b", "c d"]) == 1.0
    assert preference.win_rate([1, 0, 2], [0, 0, 3]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        preference.win_rate([], [])
    with pytest.raises(ValueError, match="unknown people"):
        preference.make_prompts(["zorro"])
    assert len(preference.make_prompts(["ada", "ben"])) == 2 * len(preference.PROMPT_TEMPLATES)


def test_sample_pairs_is_notebook_08s_recipe(model, tok):
    prompts = [{"prompt": "tell me about ada .", "person": "ada"}, {"prompt": "who is ben ?", "person": "ben"}]
    pairs = preference.sample_pairs(model, tok, prompts, per_prompt=4, seed=3)
    again = preference.sample_pairs(model, tok, prompts, per_prompt=4, seed=3)
    assert pairs["chosen"] == again["chosen"] and len(pairs["chosen"]) <= 8
    people = [p["person"] for p in pairs["prompts"]]
    assert not preference.ties(people, pairs["chosen_text"], pairs["rejected_text"]).any()    # ties dropped


def test_win_rate_vs_start_is_one_half_before_training(model, tok):
    measure = preference.win_rate_vs_start(model, tok, [{"prompt": "who is ben ?", "person": "ben"}], 6, seed=0)
    assert measure() == 0.5
