"""The one-page map of exam task statement 3.3 in README.md: every item of the guide's current wording has a row.

The AWS Certified AI Practitioner (AIF-C01) exam guide, content domain 3, task statement 3.3 "Describe the training
and fine-tuning process for FMs" (https://docs.aws.amazon.com/aws-certification/latest/ai-practitioner-01/
ai-practitioner-01-domain3.html) lists three objectives, each with its items "(for example, ...)". The README's
"## Exam map: task statement 3.3" section must quote the three sentences and give every item a table row with a link to
an existing notebook (where the learner measures it), an AWS service, and the quiz questions that test it.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HEADING = "## Exam map: task statement 3.3"

# objective label used in the map's first column -> the guide's sentence, word for word (current guide)
GUIDE_3_3 = {
    "Key elements of training an FM":
        "Describe the key elements of training an FM (for example, pre-training, fine-tuning, continuous "
        "pre-training, distillation).",
    "Methods for fine-tuning an FM":
        "Define methods for fine-tuning an FM (for example, instruction tuning, adapting models for specific domains, "
        "transfer learning, continuous pre-training).",
    "Preparing data to fine-tune an FM":
        "Describe how to prepare data to fine-tune an FM (for example, data curation, governance, size, labeling, "
        "representativeness, reinforcement learning from human feedback [RLHF]).",
}
NOTEBOOK_LINK = re.compile(r"\]\((notebooks/\d\d_[\w]+\.ipynb)\)")
AWS = ("Amazon Bedrock", "Amazon SageMaker", "SageMaker", "Bedrock")


def items(sentence: str) -> list[str]:
    """The items of one objective: the comma-separated list after 'for example,' inside its parentheses."""
    inside = sentence[sentence.index("(for example,") + len("(for example,"): sentence.rindex(")")]
    return [item.strip() for item in inside.split(",")]


CASES = [(objective, item) for objective, sentence in GUIDE_3_3.items() for item in items(sentence)]


def _norm(text: str) -> str:
    return " ".join(text.replace("*", "").replace("`", "").split()).lower()


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"README.md has no {HEADING!r} section"
    start = text.index(HEADING)
    nxt = re.search(r"^## ", text[start + len(HEADING):], flags=re.M)
    return text[start: start + len(HEADING) + (nxt.start() if nxt else len(text))]


def _rows() -> list[list[str]]:
    rows = []
    for line in _section().splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|") and not re.fullmatch(r"\|[\s|:-]+\|", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]                                      # the first row is the header


def test_items_are_parsed_from_the_guide_wording():
    assert len(CASES) == 14
    assert items(GUIDE_3_3["Key elements of training an FM"]) == [
        "pre-training", "fine-tuning", "continuous pre-training", "distillation"]
    assert items(GUIDE_3_3["Preparing data to fine-tune an FM"])[-1] == \
        "reinforcement learning from human feedback [RLHF]"


def test_map_quotes_the_current_guide():
    section = _norm(_section())
    for sentence in GUIDE_3_3.values():
        assert _norm(sentence) in section, f"the map does not quote the guide: {sentence!r}"
    assert "docs.aws.amazon.com/aws-certification/" in section


def test_map_sits_right_after_the_course_map():
    headings = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    assert "## Course map" in headings and HEADING in headings
    assert headings.index(HEADING) == headings.index("## Course map") + 1


@pytest.mark.parametrize("objective,item", CASES, ids=[f"{o.split()[0]}-{i}" for o, i in CASES])
def test_map_has_a_row_for_every_item(objective, item):
    rows = [r for r in _rows() if len(r) >= 5 and _norm(r[0]) == _norm(objective) and _norm(r[1]) == _norm(item)]
    assert rows, f"no map row for {objective!r} / {item!r}"
    row = rows[0]
    links = NOTEBOOK_LINK.findall(row[2])
    assert links, f"{item!r}: the 'where you measure it' column links no notebook"
    for link in links:
        assert (ROOT / link).exists(), f"{item!r}: {link} does not exist"
    assert any(service in row[3] for service in AWS), f"{item!r}: the 'on AWS' column names no AWS service"
    assert "quiz" in row[4].lower(), f"{item!r}: the quiz column names no quiz"


def test_map_links_only_existing_notebooks():
    for link in NOTEBOOK_LINK.findall(_section()):
        assert (ROOT / link).exists(), f"the exam map links {link}, which does not exist"
