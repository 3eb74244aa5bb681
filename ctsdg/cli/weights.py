"""``ctsdg weights``: the standard weight files (`ctsdg.weights`) listed, fetched and verified."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ctsdg.cli.options import Subparsers, subcommand


def _add_weights(sub: Subparsers) -> None:
    from ctsdg.weights import MIRROR_VARIABLE, REGISTRY

    parser = subcommand(
        sub,
        "weights",
        _run_weights,
        help="the standard weight files behind =auto: list, fetch NAME, verify",
        description=(
            "The published files that pretrained_vgg=auto, lpips_weights=auto and "
            "fid_weights=auto stand for, kept in torch.hub's cache (TORCH_HOME/hub/checkpoints). "
            f"fetch downloads them (from ${MIRROR_VARIABLE}/FILE when that URL base is set) and "
            "checks their SHA-256; verify hashes what is there."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="name, file, source, cache path and whether it is there")
    fetch = actions.add_parser("fetch", help="download (or copy) and verify the named files")
    fetch.add_argument(
        "names", nargs="+", metavar="NAME", choices=[*REGISTRY, "all"], help="a name, or all"
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    actions.add_parser("verify", help="hash the cached files; status 1 if one does not match")


def _run_weights(args: argparse.Namespace) -> int:
    from ctsdg import weights

    if args.action == "list":
        _print_table([weights.status(name) for name in weights.REGISTRY])
        return 0
    if args.action == "fetch":
        names = list(weights.REGISTRY) if "all" in args.names else dict.fromkeys(args.names)
        for name in names:
            before = weights.cache_path(name).is_file()
            path = weights.fetch(name, progress=False if args.no_progress else None)
            print(f"{name}: {path} ({'already there, ' if before else ''}verified)")
        return 0
    found = [weights.status(name, check=True) for name in weights.REGISTRY]
    _print_table(found)
    return 1 if any(s.state == "checksum mismatch" for s in found) else 0


def _print_table(rows: list) -> None:
    """One Markdown-style table: name, file, state, cache path, source."""
    header = ("name", "file", "state", "cache path", "source")
    cells = [(s.weights.name, s.weights.file, s.state, str(s.path), s.source) for s in rows]
    widths = [max(len(r[i]) for r in (header, *cells)) for i in range(len(header))]
    for line in (header, tuple("-" * w for w in widths), *cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")


#: Registered by `ctsdg.cli.main`, in this order.
COMMANDS: list[Callable[[Subparsers], None]] = [_add_weights]
