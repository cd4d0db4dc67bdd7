"""The notebooks' setup cell for Google Colab, and where the course is hosted -- in one place.

Each notebook starts with the same setup cell: on Colab it clones the course and installs fmlab with
``--no-deps`` (Colab's own torch, numpy, pandas, matplotlib and ipywidgets 7.7 stay as they are); anywhere
else it does nothing.  The clone address is `COURSE_REPO`; to host the course elsewhere run

    python -m fmlab.colab --repo https://github.com/you/fmlab

which rewrites the setup cell of every notebook and the Colab badges in README.md (``tests/test_colab.py``
checks that every notebook's first code cell is exactly `setup_cell()`).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

__all__ = ["COURSE_REPO", "setup_cell", "rewrite"]

COURSE_REPO = "https://github.com/fmlab-course/fmlab"
ROOT = Path(__file__).resolve().parent.parent


def setup_cell(repo: str = COURSE_REPO) -> str:
    """The source of every notebook's first code cell."""
    return (f"# Setup. On Colab this fetches the course and installs fmlab without touching Colab's torch.\n"
            f"# (Hosting the course elsewhere? `python -m fmlab.colab --repo URL` rewrites this cell everywhere.)\n"
            f"COURSE_REPO = \"{repo}\"\n"
            f"import os, sys\n"
            f"if \"google.colab\" in sys.modules and not os.path.exists(\"fmlab-course\"):\n"
            f"    os.system(f\"git clone -q --depth 1 {{COURSE_REPO}} fmlab-course\")\n"
            f"    os.system(\"pip install -q --no-deps -e fmlab-course\")\n"
            f"    sys.path.insert(0, \"fmlab-course\")")


def _github_path(repo: str) -> str:
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/.]+)(?:\.git)?/?", repo)
    if not m:
        raise ValueError(f"{repo!r} is not a https://github.com/owner/name address (Colab badges need one)")
    return m.group(1)


def rewrite(repo: str, root: Path = ROOT) -> list[Path]:
    """Point every notebook's setup cell, the Colab badges and `COURSE_REPO` at `repo`; returns changed files."""
    import nbformat

    new_path, changed = _github_path(repo), []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        if first.source != setup_cell(repo):
            first.source = setup_cell(repo)
            nbformat.write(nb, path)
            changed.append(path)
    readme = root / "README.md"
    old_path = _github_path(COURSE_REPO)
    text = readme.read_text()
    if old_path in text and old_path != new_path:
        readme.write_text(text.replace(old_path, new_path))
        changed.append(readme)
    me = root / "fmlab" / "colab.py"
    src = me.read_text()
    if f'COURSE_REPO = "{COURSE_REPO}"' in src and repo != COURSE_REPO:
        me.write_text(src.replace(f'COURSE_REPO = "{COURSE_REPO}"', f'COURSE_REPO = "{repo}"', 1))
        changed.append(me)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fmlab.colab", description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, help="the https://github.com/owner/name the course is cloned from")
    args = parser.parse_args(argv)
    for path in rewrite(args.repo):
        print(f"rewrote {path}")
    print("re-run `python bench/course.py --write` so the stored outputs match the notebooks' code")


if __name__ == "__main__":
    main()
