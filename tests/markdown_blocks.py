"""The fenced code blocks of a markdown page, for the tests that run the documentation.

One reader for ``tests/test_docs_blocks.py`` (``python`` blocks) and ``tests/test_docs_shell.py`` (shell
blocks). Every fence of the page is walked, whatever its language, so that a block of one language never
hides in, or swallows, a block of another.

Markers, in the markdown source just above a block (blank lines between them are allowed):

* ``<!-- not run: reason -->``: the whole block is not run;
* ``<!-- not run (PREFIX): reason -->``: shell blocks only; the commands of the block that start with
  ``PREFIX`` are not run (the others are). Several markers may be stacked.

The reason is required: the reader sees it in the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FENCE = re.compile(r"^```(?P<language>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run(?:\s*\((?P<prefix>[^)]*)\))?:\s*(?P<reason>.*?)\s*-->\s*$")
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")


@dataclass(frozen=True)
class Block:
    """One fenced block: its source, the 1-based line of its first code line, the whole-block skip
    reason, its language and the ``(command prefix, reason)`` pairs of its not-run lines."""

    code: str
    line: int
    not_run: str | None
    language: str = "python"
    not_run_lines: tuple[tuple[str, str], ...] = ()


def _markers_above(lines: list[str], opening: int, page: str) -> list[re.Match]:
    """The ``not run`` markers stacked above the fence at index ``opening``, nearest last."""
    markers = []
    previous = opening - 1
    while previous >= 0:
        text = lines[previous].strip()
        if not text:
            previous -= 1
            continue
        marker = NOT_RUN.match(text)
        if marker is None:
            break
        if not marker.group("reason"):
            raise ValueError(f"{page}:{previous + 1}: 'not run' marker without a reason")
        markers.append(marker)
        previous -= 1
    return markers[::-1]


def extract_blocks(text: str, page: str, languages: tuple[str, ...] = ("python",)) -> list[Block]:
    """The blocks of a markdown page in ``languages``, in order.

    Raises:
        ValueError: a block is not closed, a ``not run`` marker gives no reason, or a python block has a
            per-command marker (``page:line`` named).
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        opening, language = index, fence.group("language")
        end = opening + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{opening + 1}: {language or 'plain'} block is never closed")
        if language in languages:
            markers = _markers_above(lines, opening, page)
            whole = [marker.group("reason") for marker in markers if marker.group("prefix") is None]
            per_line = tuple((marker.group("prefix").strip(), marker.group("reason"))
                             for marker in markers if marker.group("prefix") is not None)
            if per_line and language not in SHELL_LANGUAGES:
                raise ValueError(f"{page}:{opening}: per-command 'not run' markers are for shell blocks")
            blocks.append(Block("\n".join(lines[opening + 1:end]) + "\n", opening + 2,
                                whole[-1] if whole else None, language, per_line))
        index = end + 1
    return blocks
