"""Every shell block of README.md and docs/*.md, run as written.

A block runs with bash in a scratch copy of the repository's layout (``ctsdg/``, ``tests/``,
``docs/`` and ``.venv`` linked in), with the virtualenv's ``bin`` first on PATH, as
``. .venv/bin/activate`` leaves it after the quick start. The files a command names that a
user brings (``photo.jpg``, ``mask.png``, ``model.safetensors``, ``runs/celeba``, ...) are
stand-ins made from a tiny model trained here, listed in `STAND_INS`.

A block that cannot run here is marked in the Markdown itself, on the line before its fence:

    <!-- not run: needs CelebA and torchvision's VGG16 -->

The reason is shown in the test id, so the list of skipped blocks and why is what
``pytest --collect-only -q tests/test_docs_commands.py`` prints. Skipped blocks are still
checked: bash must parse them (``bash -n``), and every ``ctsdg`` command in them must parse as
a command line (subcommand, flags, and ``KEY=VALUE`` config keys and values).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"shell", "bash", "sh"}
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")

#: What the stand-in files are (made by `_sandbox`).
STAND_INS = {
    "runs/demo": "a width-8 model trained for 2 iterations on the demo data (128 x 128)",
    "runs/celeba, runs/ctsdg": "links to runs/demo",
    "model.safetensors, weights.safetensors": "ctsdg convert of runs/demo",
    "model.pth": "runs/demo's training checkpoint under that name (format read from the bytes)",
    "photo.jpg, photo.png, mask.png, one_mask.png": "a 160 x 192 demo photograph and a hole",
    "photos/, masks/": "two such photographs (a.jpg, b.png) and their masks (a.png, b.png)",
}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    text: str
    skip: str | None  # the not-run reason

    @property
    def id(self) -> str:
        where = f"{self.path.relative_to(ROOT)}:{self.line}"
        return f"{where} (not run: {self.skip})" if self.skip else where


def shell_blocks(path: Path) -> list[Block]:
    """The fenced shell blocks of a Markdown file, with the reason of a not-run marker on the
    last non-blank line before the fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, language = fence.groups()
        end = i + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        if language in SHELL_LANGUAGES:
            before = next((line for line in reversed(lines[:i]) if line.strip()), "")
            marker = NOT_RUN.fullmatch(before.strip())
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[i + 1 : end]
            ]
            found.append(
                Block(path, i + 1, "\n".join(body) + "\n", marker.group(1) if marker else None)
            )
        i = end + 1
    return found


BLOCKS = [block for path in DOCS for block in shell_blocks(path)]


def commands(text: str) -> list[list[str]]:
    """The ``ctsdg ...`` commands of a block (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words and words[0] in ("ctsdg", ".venv/bin/ctsdg"):
            found.append(words[1:])
        elif "-m" in words and words[words.index("-m") + 1 :][:1] == ["ctsdg"]:  # torchrun, python
            found.append(words[words.index("-m") + 2 :])
    return found


def test_the_docs_have_shell_blocks_and_markers_name_a_reason() -> None:
    assert len(BLOCKS) >= 20
    run = [b for b in BLOCKS if not b.skip]
    assert len(run) >= 5, [b.id for b in run]
    for path in DOCS:  # a marker that is not right before a shell block is a mistake
        lines = path.read_text(encoding="utf-8").splitlines()
        markers = sum(1 for line in lines if NOT_RUN.fullmatch(line.strip()))
        assert markers == sum(1 for b in BLOCKS if b.path == path and b.skip), path


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_every_block_parses(block: Block, tmp_path: Path) -> None:
    """bash parses the block, and each ctsdg command in it parses as ctsdg's own command line
    would (unknown flags, keys and values fail here without running anything)."""
    script = tmp_path / "block.sh"
    script.write_text(block.text)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    from ctsdg.cli import _build_parser, _is_override
    from ctsdg.cli.options import config_from_args
    from ctsdg.config import load_config

    parser = _build_parser()
    for argv in commands(block.text):
        argv = [os.path.expandvars(a) for a in argv]
        args, extra = parser.parse_known_args(argv)
        assert all(_is_override(a) for a in extra), (argv, extra)
        if hasattr(args, "overrides"):
            args.overrides = [*args.overrides, *extra]
            if getattr(args, "config", None) and args.config.endswith((".yaml", ".yml")):
                args.config = None  # the reader's own file: check the keys on the defaults
            if hasattr(args, "config"):
                config_from_args(args)
            else:  # ctsdg demo: overrides of the shipped demo config
                load_config(None, args.overrides)


def _stand_ins(root: Path, env: dict[str, str]) -> None:
    """The files of `STAND_INS`, in ``root``."""
    import numpy as np
    from PIL import Image

    from ctsdg.data import demo_photo

    def ctsdg(*argv: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "ctsdg", *argv],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr

    ctsdg(
        "train", "--config", "demo", "save_path=runs/demo", "width=8", "image_load_size=[128, 128]",
        "batch_size=2", "train_iter=2", "finetune_iter=0", "num_parallel_workers=0",
        "sample_every=0", "tensorboard=false",
    )  # fmt: skip
    for name in ("celeba", "ctsdg"):
        (root / "runs" / name).symlink_to("demo")
    ctsdg("convert", "runs/demo", "model.safetensors")
    (root / "weights.safetensors").symlink_to("model.safetensors")
    newest = sorted((root / "runs/demo/checkpoints").glob("*.pt"))[-1]
    (root / "model.pth").symlink_to(newest)
    photo = demo_photo("chelsea").resize((192, 160))
    holes = np.zeros((160, 192), np.uint8)
    holes[50:90, 60:120] = 255
    mask = Image.fromarray(holes)
    photo.save(root / "photo.jpg")
    photo.save(root / "photo.png")
    mask.save(root / "mask.png")
    mask.save(root / "one_mask.png")
    (root / "photos").mkdir()
    (root / "masks").mkdir()
    photo.save(root / "photos/a.jpg")
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "photos/b.png")
    mask.save(root / "masks/a.png")
    mask.save(root / "masks/b.png")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A scratch repository root: the project's folders linked in, the stand-ins made."""
    root = tmp_path_factory.mktemp("clone")
    for name in ("ctsdg", "tests", "docs", "Makefile", "pyproject.toml", "constraints.txt"):
        (root / name).symlink_to(ROOT / name)
    (root / ".venv").symlink_to(Path(sys.prefix))  # what `make demo` created
    env = {
        **os.environ,
        "PATH": f"{root / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),  # this checkout's code, also where .venv is another's
        "CTSDG_CACHE": str(root / ".cache"),
        "SECRET": "a-token",
    }
    _stand_ins(root, env)
    return root, env


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.skip], ids=lambda b: b.id)
def test_block_runs_as_written(
    block: Block, sandbox: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    base, env = sandbox
    root = tmp_path / "clone"  # each block in its own copy: one block's outputs are not another's
    shutil.copytree(base, root, symlinks=True)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.text],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"{block.id}\n{block.text}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


def _readme_serve_lines() -> tuple[str, str]:
    """The README's ``ctsdg serve ... --token`` line and the curl command after it."""
    (block,) = [b for b in BLOCKS if b.path.name == "README.md" and "--token" in b.text]
    lines = re.sub(r"\\\n\s*", " ", block.text).splitlines()
    serve = next(line for line in lines if line.startswith("ctsdg serve") and "--token" in line)
    curl = next(line for line in lines if line.startswith("curl"))
    return serve, curl


@pytest.mark.slow
def test_readme_token_serve_and_curl_lines_work_together(
    sandbox: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The README's served-with-a-token line and its curl line, as written but for the port
    (8080 may be taken on a shared machine): the answer is the inpainted PNG, not a 401."""
    import socket
    import time
    import urllib.request

    if shutil.which("curl") is None:
        pytest.skip("the README's line is a curl command: needs curl (apt-get install curl)")
    base, env = sandbox
    root = tmp_path / "clone"
    shutil.copytree(base, root, symlinks=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    serve, curl = (line.replace("8080", port) for line in _readme_serve_lines())
    assert "Authorization: Bearer $SECRET" in curl
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"], cwd=root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        done = subprocess.run(["bash", "-c", curl], cwd=root, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert (root / "result.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        unauthorised = subprocess.run(
            ["bash", "-c", curl.replace("$SECRET", "wrong") + " -w '%{http_code}'"],
            cwd=root, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert unauthorised.stdout.endswith("401")
    finally:
        server.terminate()
        server.wait(timeout=60)
