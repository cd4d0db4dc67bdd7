"""The exam layer of every notebook: exam essentials first, the AWS service that does the step, deep dives folded.

An exam candidate reads a notebook in ~15 minutes: the "Exam essentials" box comes before any code, the "On AWS"
section names the service with a link to its official documentation, and every section beyond the exam
("Optional deep dive ...", "Reproducibility ...") is folded: a heading cell with JupyterLab's
`jp-MarkdownHeadingCollapsed` metadata (everything under it stays collapsed until the learner opens it), or an
HTML `<details>` block.
"""
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
AWS_DOCS = re.compile(r"\]\((https://(docs\.)?aws\.amazon\.com/[^)\s]+)\)")


def _markdown(path):
    return [(i, c) for i, c in enumerate(nbformat.read(path, as_version=4).cells) if c.cell_type == "markdown"]


def _heading(cell) -> str:
    first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
    return first if first.startswith("#") else ""


def _folded(cell) -> bool:
    return bool(cell.metadata.get("jp-MarkdownHeadingCollapsed")) or cell.source.lstrip().startswith("<details>")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exam_essentials_come_before_any_code(path):
    cells = nbformat.read(path, as_version=4).cells
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    essentials = [i for i, c in _markdown(path) if "exam essentials" in _heading(c).lower()]
    assert essentials, f"{path.name} has no '## Exam essentials' cell"
    assert essentials[0] < first_code, f"{path.name}: the exam essentials come after code (cell {essentials[0]})"
    text = cells[essentials[0]].source.lower()
    assert "3.3" in text or "task statement" in text, f"{path.name}: the essentials do not name the exam item"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_on_aws_names_the_service_with_official_links(path):
    sections = [c for _, c in _markdown(path) if "on aws" in _heading(c).lower()]
    assert sections, f"{path.name} has no 'On AWS' section"
    links = [m.group(1) for c in sections for m in AWS_DOCS.finditer(c.source)]
    assert links, f"{path.name}: the On-AWS section links no official AWS documentation page"
    assert any(s in c.source for c in sections for s in ("Amazon Bedrock", "Amazon SageMaker", "SageMaker")), \
        f"{path.name}: the On-AWS section names no service"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_deep_dives_and_reproducibility_tables_are_folded(path):
    cells = _markdown(path)
    for i, c in cells:
        head = _heading(c).lower()
        if "optional deep dive" in head or "reproducibility" in head:
            assert _folded(c), f"{path.name} cell {i}: {_heading(c)!r} is not folded (jp-MarkdownHeadingCollapsed)"
    assert any("reproducibility" in (_heading(c) + c.source[:300]).lower() and _folded(c) for _, c in cells), \
        f"{path.name} has no folded Reproducibility section"
    for i, c in cells:
        if c.source.lstrip().startswith("**Across seeds"):
            pytest.fail(f"{path.name} cell {i}: a seed-spread paragraph outside the folded Reproducibility section")
