"""Every shell block of README.md and docs/*.md runs (issue #21), as a reader would paste it, on small sizes.

How a page runs. Its shell blocks (``bash``, ``sh``, ``shell``, ``console``) run in order, one command
after another, in one fresh temporary folder per page: a reader pastes a page's blocks one after the other
in one terminal. The folder stands in for the root of a fresh clone after ``make test``: the tracked
sources that commands read (``CLONE_ENTRIES``: ``recipes/``, ``cvzoo/`` for the bundled
``cvzoo/data/assets/...`` files, ``benchmarks/``, ...) are symbolic links to this checkout, and ``.venv``
links to the Python environment running the test, so ``.venv/bin/cvzoo`` and ``.venv/bin/python`` resolve.
Everything a command writes (``runs/``, ``data/``, ``out/``) lands in the temporary folder; nothing the
checkout ignores (a local ``data/`` or ``runs/``) is visible.

How a command runs. A plain ``cvzoo ...`` (or ``.venv/bin/cvzoo ...``) line runs in this process through
``cvzoo.cli.main.main`` (its words split by ``shlex``; one process, no interpreter start per command). A
line with shell syntax (a pipe, a redirection, ``&&``, ``;``, ``$``, an environment assignment) or another
program runs with ``bash -o pipefail -c`` with the environment's ``bin`` folder first on ``PATH``. A
``\\``-continued line is one command. In ``$ command`` transcripts (``console`` blocks) the lines after a
command are its documented output: every one of them, ``...`` lines aside, must be a line of the real
output (trailing spaces ignored).

Small sizes: the only rewrite of a command (``shrink``), applied before it runs:

* ``cvzoo train`` (not ``--resume``): ``--epochs N`` and ``--set train.epochs=N`` become 1 (``--epochs 1``
  is added when neither is given) and ``--set data.limit_train=32 data.limit_val=16`` is added right
  after ``train`` (a later ``--set`` of the same key in the command wins);
* ``cvzoo train --resume ... --epochs N``: N becomes 2 (one more than the run being extended);
* ``cvzoo data synth`` / ``synth-video``: ``--train N --val M`` become ``--train 16 --val 8`` (added when
  missing).

Anything else runs as written. Commands that cannot run here are marked in the markdown with
``<!-- not run: reason -->`` above the block, or ``<!-- not run (PREFIX): reason -->`` for the commands
of the block that start with PREFIX (``tests/markdown_blocks.py``): ``make``, ``pip``, ``apt-get``, ``npm``
(network, or they are the test command), ``cvzoo serve`` (a server that runs until stopped; tested end
to end in ``tests/server``) and benchmarks of minutes.

Placeholders: the files the docs ask the reader to bring are made by the test in the page's folder when
the page's runnable commands name them (``PLACEHOLDERS``):

============================  ===============================================================================
``photos/``                   three scikit-image pictures (astronaut, coffee, chelsea), 160 px wide, PNG
``photo.jpg``/``.png``,       the astronaut (``skimage.data``), 512 x 512 (``big_photo.jpg``: the same
``image.jpg``, ``street.jpg``, twice as large, 1024 x 1024)
``big_photo.jpg``
``a.jpg``, ``b.jpg``          the astronaut and the astronaut warped by the homography of docs/features.md
``astronaut.png``,            the same two as PNG (docs/features.md says so)
``astronaut_warped.png``
``street.mp4``, ``clip.mp4``  16 frames, 64 x 64, a bright square moving right (H.264 through PyAV)
``data.yaml``                 a YOLO data set in the folder: ``cvzoo.data.synthetic.write_yolo_dataset``,
                              16 train / 8 val scenes
``VOCdevkit/``                the bundled VOC sample (``cvzoo/data/assets/voc_sample``) copied
``boards/``                   the bundled left chessboards (``cvzoo/data/assets/chessboards/*_left.jpg``)
``data/fashion-mnist/``       the bundled Fashion-MNIST sample written as gzip idx files (train / t10k), the
                              layout ``make bench-data`` links from Debian's dataset-fashion-mnist
============================  ===============================================================================
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.markdown_blocks import SHELL_LANGUAGES, extract_blocks

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# What a fresh clone has that the documented commands read; linked, not copied.
CLONE_ENTRIES = ("cvzoo", "recipes", "benchmarks", "tools", "Makefile", "pyproject.toml")
SMALL_TRAIN, SMALL_VAL = 32, 16  # data.limit_train / data.limit_val of every new training run
SMALL_SCENES_TRAIN, SMALL_SCENES_VAL = 16, 8  # cvzoo data synth / synth-video counts
SHELL_SYNTAX = re.compile(r"[|&;<>$`]|^\s*\w+=")
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class Command:
    """One command of a shell block: its text (continuations joined), its 1-based line in the page and,
    for a ``$ command`` transcript, the documented output lines."""

    text: str
    line: int
    expected: tuple[str, ...] = ()


def commands_of(code: str, first_line: int) -> list[Command]:
    """The commands of a shell block in order; comment-only and blank lines are skipped."""
    lines = code.splitlines()
    transcript = any(line.startswith("$ ") for line in lines)
    commands: list[Command] = []
    index = 0
    while index < len(lines):
        line, start = lines[index], index
        if transcript and not line.startswith("$ "):
            index += 1
            continue
        text = line[2:] if transcript else line
        while text.rstrip().endswith("\\") and index + 1 < len(lines):
            index += 1
            text = text.rstrip()[:-1].rstrip() + " " + lines[index].strip()
        index += 1
        expected: list[str] = []
        while transcript and index < len(lines) and not lines[index].startswith("$ "):
            if lines[index].strip() not in ("", "..."):
                expected.append(lines[index].rstrip())
            index += 1
        if text.strip() and not text.lstrip().startswith("#"):
            commands.append(Command(text.strip(), first_line + start, tuple(expected)))
    return commands


def _set_flag(command: str, flag: str, value: int, insert_after: str) -> str:
    """``flag N`` becomes ``flag value``; without the flag it is inserted after ``insert_after``."""
    pattern = rf"({re.escape(flag)}[ =])\d+"
    if re.search(pattern, command):
        return re.sub(pattern, rf"\g<1>{value}", command)
    return re.sub(insert_after, rf"\g<0> {flag} {value}", command, count=1)


def shrink(command: str) -> str:
    """The small-size rewrite of a documented command (the module docstring lists the rules)."""
    synth = r"\bcvzoo data synth(-video)?\b"
    if re.search(synth, command):
        command = _set_flag(command, "--train", SMALL_SCENES_TRAIN, synth)
        return _set_flag(command, "--val", SMALL_SCENES_VAL, synth)
    train = r"\bcvzoo train\b"
    if not re.search(train, command):
        return command
    if "--resume" in command:
        return re.sub(r"(--epochs[ =])\d+", r"\g<1>2", command)
    command = re.sub(r"(train\.epochs=)\d+", r"\g<1>1", command)
    if "train.epochs=" not in command:
        command = _set_flag(command, "--epochs", 1, train)
    return re.sub(train, rf"\g<0> --set data.limit_train={SMALL_TRAIN} data.limit_val={SMALL_VAL}",
                  command, count=1)


def in_process_argv(command: str) -> list[str] | None:
    """The arguments of a plain ``cvzoo`` command (run in this process), or None for a shell line."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", command)
    if SHELL_SYNTAX.search(re.sub(r"(^|\s)#.*$", "", unquoted)):  # a comment's text is not syntax
        return None
    words = shlex.split(command, comments=True)
    if not words or words[0] not in ("cvzoo", ".venv/bin/cvzoo"):
        return None
    return words[1:]


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """``cvzoo ARGV`` through the CLI's main function: (exit status, stdout and stderr)."""
    import torch

    from cvzoo.cli.main import main

    output = io.StringIO()
    threads = torch.get_num_threads()  # --threads N must not leak into the following commands
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse errors
                status = exit_.code if isinstance(exit_.code, int) else 1
            except Exception:  # noqa: BLE001 - as the console script would: traceback, status 1
                traceback.print_exc()
                status = 1
    finally:
        torch.set_num_threads(threads)
    return status, output.getvalue()


def run_in_bash(command: str, folder: Path) -> tuple[int, str]:
    """A shell line through bash (pipefail) with the environment's bin folder first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # The checkout under test, whatever the environment's own install of cvzoo points at.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=folder, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S)
    return done.returncode, done.stdout


# ----------------------------------------------------------------------------------------------------
# Placeholders: what the docs ask the reader to bring, made from bundled or scikit-image data.

def _save_image(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _astronaut_warped() -> np.ndarray:
    import cv2

    # The homography of docs/features.md's SIFT example.
    h_true = np.array([[0.95, 0.08, 15.0], [-0.06, 0.97, 25.0], [5e-5, 3e-5, 1.0]])
    return cv2.warpPerspective(_astronaut(), h_true, (512, 512))


def _make_photos(folder: Path) -> None:
    from PIL import Image
    from skimage import data

    for name in ("astronaut", "coffee", "chelsea"):
        image = Image.fromarray(getattr(data, name)())
        image.thumbnail((160, 160))
        _save_image(folder / "photos" / f"{name}.png", np.asarray(image))


def _make_video(path: Path) -> None:
    from cvzoo.data.video import write_video

    frames = np.zeros((16, 64, 64), np.uint8)
    for index, frame in enumerate(frames):
        frame[24:40, 2 + 3 * index:18 + 3 * index] = 255
    write_video(path, frames)


def _make_yolo_data(folder: Path) -> None:
    from cvzoo.data.synthetic import write_yolo_dataset

    write_yolo_dataset(folder, SMALL_SCENES_TRAIN, SMALL_SCENES_VAL, seed=0)


def _make_fashion_idx(folder: Path) -> None:
    from cvzoo.data.bundled import load_fashion_sample

    root = folder / "data" / "fashion-mnist"
    root.mkdir(parents=True)
    for split, prefix in (("train", "train"), ("val", "t10k")):
        images, labels, _ = load_fashion_sample(split)
        for kind, array in (("images-idx3", images.astype(np.uint8)), ("labels-idx1", labels.astype(np.uint8))):
            # idx header: 0x0000, element type 0x08 (uint8), number of dimensions, then big-endian sizes.
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
            with gzip.open(root / f"{prefix}-{kind}-ubyte.gz", "wb") as file:
                file.write(header + array.tobytes())


def _copy_bundled(source: str, target: str, pattern: str = "*") -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        assets = REPO / "cvzoo" / "data" / "assets" / source
        (folder / target).mkdir(parents=True)
        for path in assets.glob(pattern):
            if path.is_dir():
                shutil.copytree(path, folder / target / path.name)
            else:
                shutil.copy2(path, folder / target / path.name)
    return make


PLACEHOLDERS: dict[str, Callable[[Path], None]] = {
    "photos/": _make_photos,
    "photo.jpg": lambda folder: _save_image(folder / "photo.jpg", _astronaut()),
    "photo.png": lambda folder: _save_image(folder / "photo.png", _astronaut()),
    "image.jpg": lambda folder: _save_image(folder / "image.jpg", _astronaut()),
    "street.jpg": lambda folder: _save_image(folder / "street.jpg", _astronaut()),
    "big_photo.jpg": lambda folder: _save_image(folder / "big_photo.jpg",
                                                _astronaut().repeat(2, axis=0).repeat(2, axis=1)),
    "a.jpg": lambda folder: _save_image(folder / "a.jpg", _astronaut()),
    "b.jpg": lambda folder: _save_image(folder / "b.jpg", _astronaut_warped()),
    "astronaut.png": lambda folder: _save_image(folder / "astronaut.png", _astronaut()),
    "astronaut_warped.png": lambda folder: _save_image(folder / "astronaut_warped.png", _astronaut_warped()),
    "street.mp4": lambda folder: _make_video(folder / "street.mp4"),
    "clip.mp4": lambda folder: _make_video(folder / "clip.mp4"),
    "data.yaml": _make_yolo_data,
    "VOCdevkit/": _copy_bundled("voc_sample", "VOCdevkit"),
    "boards/": _copy_bundled("chessboards", "boards", "*_left.jpg"),
    "data/fashion-mnist": _make_fashion_idx,
}


def _names_placeholder(commands: list[Command], name: str) -> bool:
    # A whole word: "data.yaml" is not "data/scenes/data.yaml"; "photos/" is also "'photos/*.png'".
    stem = name.rstrip("/")
    word = re.compile(rf"(?<![\w./-]){re.escape(stem)}(?![\w.-])")
    return any(word.search(command.text) for command in commands)


def prepare_folder(folder: Path, commands: list[Command]) -> list[str]:
    """Make ``folder`` a fresh clone's root (links) with the placeholders ``commands`` name; return them."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in CLONE_ENTRIES:
        (folder / entry).symlink_to(REPO / entry)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    made = [name for name in PLACEHOLDERS if _names_placeholder(commands, name)]
    for name in made:
        PLACEHOLDERS[name](folder)
    return made


# ----------------------------------------------------------------------------------------------------
# The page runner.

@dataclass(frozen=True)
class PageCommands:
    run: list[Command]
    skipped: list[tuple[Command, str]]


def page_commands(path: Path) -> PageCommands:
    """The commands of a page's shell blocks in order, split into the ones to run and the marked ones."""
    page = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    run: list[Command] = []
    skipped: list[tuple[Command, str]] = []
    for block in extract_blocks(path.read_text(encoding="utf-8"), page, SHELL_LANGUAGES):
        for command in commands_of(block.code, block.line):
            reason = block.not_run or next(
                (why for prefix, why in block.not_run_lines if command.text.startswith(prefix)), None)
            if reason is None:
                run.append(command)
            else:
                skipped.append((command, reason))
    return PageCommands(run, skipped)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_command(command: Command, folder: Path, page: str) -> None:
    """Run one command (shrunk) in ``folder``; a failure names ``page:line`` with the command, the exit
    status and the output's tail, or the documented output lines that did not appear."""
    text = shrink(command.text)
    argv = in_process_argv(text)
    status, output = run_in_process(argv) if argv is not None else run_in_bash(text, folder)
    where = f"{page}:{command.line}: `{command.text}`" + (f" (run as `{text}`)" if text != command.text else "")
    if status != 0:
        raise AssertionError(f"{where} exited with status {status}; output tail:\n{_tail(output)}")
    printed = {line.rstrip() for line in output.splitlines()}
    missing = [line for line in command.expected if line not in printed]
    if missing:
        raise AssertionError(f"{where}: documented output lines not printed:\n" + "\n".join(missing)
                             + f"\n--- output tail:\n{_tail(output)}")


def run_page(path: Path, folder: Path, monkeypatch) -> PageCommands:
    """Run the shell commands of one page in order in ``folder`` (prepared as a clone's root)."""
    page = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    commands = page_commands(path)
    prepare_folder(folder, commands.run)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for command in commands.run:
        run_command(command, folder, page)
    return commands


# ----------------------------------------------------------------------------------------------------
# Tests of the machinery, then the docs.

def test_extract_blocks_reads_shell_blocks_and_per_command_markers():
    text = ("<!-- not run (make): the test command itself -->\n<!-- not run (pip install): network -->\n\n"
            "```bash\nmake test\ncvzoo models\n```\n<!-- not run: a server -->\n```console\n$ cvzoo serve\n```\n"
            "```python\nx = 1\n```\n")
    first, second = extract_blocks(text, "t.md", SHELL_LANGUAGES)
    assert (first.line, first.language, first.not_run) == (5, "bash", None)
    assert first.not_run_lines == (("make", "the test command itself"), ("pip install", "network"))
    assert (second.not_run, second.language) == ("a server", "console")
    with pytest.raises(ValueError, match="t.md:1: 'not run' marker without a reason"):
        extract_blocks("<!-- not run (make): -->\n```bash\nmake\n```\n", "t.md", SHELL_LANGUAGES)
    with pytest.raises(ValueError, match="per-command 'not run' markers are for shell blocks"):
        extract_blocks("<!-- not run (x): why -->\n```python\nx = 1\n```\n", "t.md")


def test_commands_join_continuations_and_read_transcripts():
    block = "cvzoo a \\\n    --b 1   # note\n# comment\n\ncvzoo c\n"
    assert commands_of(block, 10) == [Command("cvzoo a --b 1   # note", 10), Command("cvzoo c", 14)]
    transcript = "$ cvzoo info x\nrow 1  \n...\nrow 2\n$ cvzoo models\n"
    assert commands_of(transcript, 3) == [Command("cvzoo info x", 3, ("row 1", "row 2")),
                                          Command("cvzoo models", 7)]


def test_shrink_rules():
    assert shrink("cvzoo data synth d --format yolo") == "cvzoo data synth --val 8 --train 16 d --format yolo"
    assert shrink("cvzoo data synth-video d --train 2048 --val 512") == \
        "cvzoo data synth-video d --train 16 --val 8"
    limits = "--set data.limit_train=32 data.limit_val=16"
    assert shrink("cvzoo train --model m --epochs 30") == f"cvzoo train {limits} --model m --epochs 1"
    assert shrink("cvzoo train --config r.yaml") == f"cvzoo train {limits} --epochs 1 --config r.yaml"
    assert shrink("cvzoo train --config r.yaml --set train.epochs=2") == \
        f"cvzoo train {limits} --config r.yaml --set train.epochs=1"
    assert shrink("cvzoo train --resume last.pt --epochs 30") == "cvzoo train --resume last.pt --epochs 2"
    assert shrink("cvzoo train --resume last.pt") == "cvzoo train --resume last.pt"
    assert shrink("cvzoo val best.pt --epochs 3") == "cvzoo val best.pt --epochs 3"


def test_plain_commands_run_in_process_and_shell_lines_in_bash():
    assert in_process_argv("cvzoo predict best.pt 'photos/*.png' --top 3  # stdout") == \
        ["predict", "best.pt", "photos/*.png", "--top", "3"]
    assert in_process_argv(".venv/bin/cvzoo models --task video") == ["models", "--task", "video"]
    assert in_process_argv("cvzoo train --set model.kwargs=\"{a: 1}\"") == ["train", "--set", "model.kwargs={a: 1}"]
    assert in_process_argv("cvzoo val best.pt --augment   # scales 1, 0.83; one NMS") == ["val", "best.pt", "--augment"]
    for shell in ("cvzoo info vgg16 --json | python -c 'x'", "cvzoo predict a > dets.json",
                  "OMP_NUM_THREADS=1 cvzoo train", "cd data && cvzoo models", "make test"):
        assert in_process_argv(shell) is None


def test_a_broken_command_names_page_line_status_and_output(tmp_path, monkeypatch):
    page = tmp_path / "p.md"
    page.write_text("```bash\ncvzoo models 'lenet*'\n```\ntext\n\n```bash\ncvzoo info no_such_model\n```\n"
                    "```console\n$ cvzoo models 'lenet*'\nlenet_mnist  a row that is not printed\n```\n")
    with pytest.raises(AssertionError, match=r"p\.md:7: `cvzoo info no_such_model` exited with status 2"):
        run_page(page, tmp_path / "run", monkeypatch)
    page.write_text("```console\n$ cvzoo models 'lenet*'\nlenet_mnist  a row that is not printed\n```\n")
    with pytest.raises(AssertionError, match=r"(?s)p\.md:2: .*documented output lines not printed:\n"
                                             r"lenet_mnist  a row that is not printed"):
        run_page(page, tmp_path / "run2", monkeypatch)


def _shell_pages() -> list[Path]:
    return [page for page in PAGES
            if extract_blocks(page.read_text(encoding="utf-8"), page.name, SHELL_LANGUAGES)]


@pytest.mark.parametrize("path", _shell_pages(), ids=lambda path: path.relative_to(REPO).as_posix())
def test_docs_shell_blocks_run(path, tmp_path, monkeypatch):
    run_page(path, tmp_path, monkeypatch)
