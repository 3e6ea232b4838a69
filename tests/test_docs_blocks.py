"""Every fenced ``python`` block of README.md and docs/*.md runs as written.

The blocks of one page run in order in one namespace (a later block may use the names an earlier block of
the same page defined, as a reader who pastes them one after the other would), with a fresh temporary folder
as the working directory, so a block that reads a file relative to the repository root, or a name defined on
another page, fails here as it would for a reader. A block that cannot run in a test (a GPU, a downloaded
weight file, the reader's own data set) is preceded in the markdown by ``<!-- not run: reason -->``; the
reason is required and the reader sees it in the source. The block reader is ``tests/markdown_blocks.py``,
shared with ``tests/test_docs_shell.py``.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from tests.markdown_blocks import extract_blocks

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
def run_page(path: Path, namespace: dict | None = None) -> None:
    """Run the blocks of one page in order in one namespace; a failure names the page and line.

    Each block is compiled with the markdown file as its file name and its lines at their place in the
    page, so a traceback points at the markdown line that failed.
    """
    page = path.relative_to(REPO).as_posix()
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    for block in extract_blocks(path.read_text(encoding="utf-8"), page):
        if block.not_run is not None:
            continue
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
        try:
            exec(code, namespace)  # noqa: S102 - running the documentation is the point of this test
        except Exception as error:  # noqa: BLE001 - any failure of a block is reported with its place
            raise AssertionError(f"{page}:{block.line}: python block failed:\n"
                                 f"{traceback.format_exc()}") from error


def test_extract_blocks_reads_places_and_markers():
    text = ("# t\n```python\nx = 1\n```\n\n<!-- not run: needs a GPU -->\n```python\ny = x\n```\n"
            "```bash\nls\n```\n")
    first, second = extract_blocks(text, "t.md")
    assert (first.code, first.line, first.not_run) == ("x = 1\n", 3, None)
    assert (second.code, second.line, second.not_run) == ("y = x\n", 8, "needs a GPU")
    with pytest.raises(ValueError, match="t.md:1: python block is never closed"):
        extract_blocks("```python\nx = 1\n", "t.md")
    with pytest.raises(ValueError, match="t.md:1: 'not run' marker without a reason"):
        extract_blocks("<!-- not run: -->\n```python\nx = 1\n```\n", "t.md")


def test_run_page_names_the_failing_markdown_line(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    page = tmp_path / "p.md"
    page.write_text("```python\nvalue = 2\n```\ntext\n```python\nassert value == 2\nmissing_name\n```\n")
    with pytest.raises(AssertionError, match=r"p\.md:6: python block failed") as failure:
        run_page(page)
    assert 'p.md", line 7' in str(failure.value)


PAGES_WITH_CODE = [page for page in PAGES
                   if extract_blocks(page.read_text(encoding="utf-8"), page.name)]


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=lambda path: path.relative_to(REPO).as_posix())
def test_docs_python_blocks_run(path, tmp_path, monkeypatch):
    from tests.test_docs_shell import _make_fashion_idx

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "data/fashion-mnist" in path.read_text(encoding="utf-8"):
        # What `make bench-data` links from Debian's dataset, stood in for by the bundled sample in the same
        # idx layout (the shell-block test's placeholder, tests/test_docs_shell.py).
        _make_fashion_idx(tmp_path)
    run_page(path)
