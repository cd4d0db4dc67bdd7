"""The Colab setup cell is the same in every notebook and the clone address lives in one place."""
import shutil
from pathlib import Path

import nbformat

from fmlab import colab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_starts_with_the_setup_cell():
    for path in NOTEBOOKS:
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert first.source == colab.setup_cell(), f"{path.name}: run python -m fmlab.colab --repo {colab.COURSE_REPO}"


def test_rewrite_moves_everything_to_a_new_host(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "fmlab").mkdir()
    shutil.copy(ROOT / "fmlab" / "colab.py", tmp_path / "fmlab" / "colab.py")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    new = "https://github.com/someone/course-copy"
    changed = colab.rewrite(new, tmp_path)
    assert len([p for p in changed if p.suffix == ".ipynb"]) == len(NOTEBOOKS)
    for path in (tmp_path / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert first.source == colab.setup_cell(new)
    assert "someone/course-copy" in (tmp_path / "README.md").read_text()
    assert 'COURSE_REPO = "https://github.com/someone/course-copy"' in (tmp_path / "fmlab" / "colab.py").read_text()
