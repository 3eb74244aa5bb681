"""``ctsdg demo``: the whole pipeline on data that ships, in a few minutes of CPU.

1. Train a reduced-width CTSDG on scikit-image's photographs with free-form masks
   (``ctsdg/configs/demo.yaml``).
2. Evaluate it beside OpenCV's Telea and Navier-Stokes inpainting, by hole-ratio bucket, on crops
   of photographs that training never saw.
3. Inpaint those photographs at their own size with `ctsdg.Inpainter`.
4. Write ``report.md`` (the metrics side by side as `ctsdg.comparison` lays them out, the config,
   the time taken), ``comparison.png`` (the metrics against the hole ratio) and ``samples.png``
   (masked input, edges, CTSDG, Telea, ground truth) into the run folder.

A few minutes of CPU training is a smoke run of the pipeline, not the paper's model; the report
says so and prints whatever the run measured.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ctsdg.comparison import comparison_table, load_results, plot_comparison
from ctsdg.config import Config, load_config, shipped_config
from ctsdg.data import HELD_OUT_PHOTOS, collate, dataset_from_config, demo_photo, free_form_holes
from ctsdg.evaluation import Evaluation, evaluate, opencv_inpaint
from ctsdg.fileio import atomic_write
from ctsdg.heartbeat import Heartbeat
from ctsdg.models import generator_inputs
from ctsdg.visualize import grid, masked_for_display

METHODS = (("ctsdg", "CTSDG"), ("telea", "Telea"), ("ns", "Navier-Stokes"))
#: In the run folder: the wall-clock seconds of training that reached an iteration, so that a
#: resumed demo (``resume=auto``) reports the time the model took, not the resume's seconds.
TRAINING_TIME_FILE = "demo_training_time.json"
SAMPLE_ROWS = 6


def run_demo(
    overrides: list[str] | None = None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Run the demo; returns the path of ``report.md``. ``overrides`` are ``key=value`` items
    applied to the demo config (e.g. ``save_path=...``, ``train_iter=...``); ``overwrite``
    replaces a run already in ``save_path`` (otherwise refused, see `train`).

    Raises KeyboardInterrupt when training was stopped by SIGINT / SIGTERM (after its
    checkpoint is saved): the demo does not go on to report on a half-trained model.
    """
    from ctsdg.inference import Inpainter
    from ctsdg.training import train

    # Progress bars only on a terminal: in a log file every redraw would be a line.
    progress = progress and sys.stderr.isatty()
    config = load_config(shipped_config("demo"), [*(overrides or []), f"progress={progress}"])
    run = Path(config.save_path)
    times: dict[str, float] = {}
    start = time.perf_counter()

    print(f"[1/4] training a width-{config.width} CTSDG on the demo photographs", flush=True)
    result = train(config, overwrite=overwrite)
    times["training"] = _training_time(config, result.iteration, time.perf_counter() - start)
    if result.status != "finished":
        print(f"training stopped at iteration {result.iteration}; the demo stops too", flush=True)
        raise KeyboardInterrupt

    print("[2/4] evaluating CTSDG, Telea and Navier-Stokes on held-out photographs", flush=True)
    evaluations: dict[str, Evaluation] = {}
    for method, _ in METHODS:
        t0 = time.perf_counter()
        cfg = config.replace(
            method=method,
            checkpoint_path=str(result.checkpoint),
            output_path=str(run / "eval" / method),
        )
        # evaluate's own progress lines cover its loop; this one the loading around it
        with Heartbeat(lambda m=method, t=t0: f"evaluating {m}: {time.perf_counter() - t:.0f} s"):
            evaluations[method] = evaluate(
                cfg,
                progress=progress,
                echo=lambda _: None,
                overwrite=True,  # the demo's own folder
            )
        times[f"evaluation ({method})"] = time.perf_counter() - t0

    print("[3/4] inpainting the held-out photographs at their own size", flush=True)
    t0 = time.perf_counter()
    with Heartbeat(lambda: f"inpainting: {time.perf_counter() - t0:.0f} s so far"):
        inpainter = Inpainter.from_checkpoint(
            result.checkpoint, device=config.device, strategy="resize"
        )
        inpainted = _inpaint_photographs(inpainter, run / "inpainted", config.seed)
        samples = _samples_figure(config, inpainter, run / "samples.png")
    times["inpainting"] = time.perf_counter() - t0

    times["total"] = time.perf_counter() - start
    print("[4/4] writing the report", flush=True)
    report = run / "report.md"
    text = _report(config, run, result.iteration, evaluations, times, inpainted, samples)
    atomic_write(report, lambda tmp: tmp.write_text(text))
    print(f"report: {report}\nsamples: {samples}\n(done in {times['total'] / 60:.1f} min)")
    return report


def _training_time(config: Config, iteration: int, seconds: float) -> float:
    """Wall-clock seconds of training up to ``iteration``: this call's, plus what an earlier call
    recorded when this one resumed its run (nothing is added when the resume had nothing left to
    train). Recorded in the run folder for the next resume."""
    path = Path(config.save_path) / TRAINING_TIME_FILE
    before = {"iteration": 0, "seconds": 0.0}
    if config.resume and path.is_file():
        with contextlib.suppress(OSError, ValueError):  # unreadable: count this call only
            before = json.loads(path.read_text())
    total = float(before["seconds"])
    if iteration > int(before["iteration"]) or not total:
        total += seconds
    record = json.dumps({"iteration": iteration, "seconds": total})
    atomic_write(path, lambda tmp: tmp.write_text(record + "\n"))
    return total


def _inpaint_photographs(inpainter, folder: Path, seed: int) -> list[Path]:
    """Each held-out photograph with a free-form mask, inpainted at its own size."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(HELD_OUT_PHOTOS):
        photo = demo_photo(name)
        holes = free_form_holes((photo.height, photo.width), (0.1, 0.25), (seed, i))
        mask = Image.fromarray((holes * 255).astype(np.uint8))
        filled = inpainter.inpaint(photo, mask)
        shown = np.array(photo)
        shown[holes] = 255
        picture = Image.fromarray(np.concatenate([shown, np.array(filled)], axis=1))
        atomic_write(folder / f"{name}.png", lambda tmp, p=picture: p.save(tmp, format="PNG"))
        written.append(folder / f"{name}.png")
    return written


def _samples_figure(config: Config, inpainter, path: Path) -> Path:
    """Held-out samples spread over the hole-ratio buckets: input, edges, CTSDG, Telea, truth."""
    dataset = dataset_from_config(config, "test")
    step = max(1, len(dataset) // SAMPLE_ROWS)
    batch = collate([dataset[i] for i in range(0, step * SAMPLE_ROWS, step)][:SAMPLE_ROWS])
    generator = inpainter.generator
    device = next(generator.parameters()).device
    inputs = (t.to(device) for t in (batch.image, batch.edge, batch.gray, batch.mask))
    with torch.no_grad():
        output = generator(*generator_inputs(*inputs)).output.cpu()
    mask = batch.mask
    columns = [
        masked_for_display(batch.image, mask),
        (batch.edge * mask) * 2 - 1,
        batch.image * mask + output * (1 - mask),
        opencv_inpaint(batch, "telea", config.inpaint_radius),
        batch.image,
    ]
    picture = grid(columns, ["input", "edges", "CTSDG", "Telea", "ground truth"])
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    return path


def _report(
    config: Config,
    run: Path,
    iterations: int,
    evaluations: dict[str, Evaluation],
    times: dict[str, float],
    inpainted: list[Path],
    samples: Path,
) -> str:
    first = evaluations["ctsdg"]
    results = load_results(
        [run / "eval" / method / "metrics.json" for method, _ in METHODS],
        [label for _, label in METHODS],
    )
    table = comparison_table(results, "seed").rstrip().splitlines()
    plot = plot_comparison(results, run / "comparison.png")
    timing = ["| step | seconds |", "|---|---|"] + [
        f"| {name} | {seconds:.1f} |" for name, seconds in times.items()
    ]
    return "\n".join(
        [
            "# ctsdg demo report",
            "",
            f"> **A smoke run, not the paper's model.** This is a width-{config.width} CTSDG "
            f"trained for {iterations} iterations ({times['training'] / 60:.1f} minutes, "
            "wall-clock) on five photographs, with a randomly initialised VGG16 for the perceptual "
            "and style losses. It exercises every part of the pipeline (data, training, "
            "checkpoints, evaluation, inpainting); its figures say nothing about what CTSDG "
            "achieves when trained as the paper does (350k + 150k iterations on CelebA, Places2 "
            "or Paris StreetView, with ImageNet VGG16 weights).",
            "",
            "## Metrics by hole-ratio bucket",
            "",
            f"{first.settings['images']} crops ({config.image_load_size[0]}x"
            f"{config.image_load_size[1]}) of held-out photographs "
            f"({', '.join(HELD_OUT_PHOTOS)}) with free-form masks; each image bucketed by its "
            "own hole ratio. Metrics as `ctsdg eval` computes them (see docs/evaluation.md); "
            "table and figure by `ctsdg compare` from the three `eval/*/metrics.json`.",
            "",
            *table,
            "",
            f"![metrics against the hole ratio]({plot.name})",
            "",
            "Seed-format block for CTSDG:",
            "",
            "```text",
            _seed_block(first),
            "```",
            "",
            "## Samples",
            "",
            f"![samples]({samples.name}) (columns: input, edges, CTSDG, Telea, ground truth)",
            "",
            "Held-out photographs inpainted at their own size (left: input, right: result): "
            + ", ".join(f"`{p.parent.name}/{p.name}`" for p in inpainted),
            "",
            "## Time taken",
            "",
            *timing,
            "",
            "## Config",
            "",
            "```yaml",
            config.to_yaml().rstrip(),
            "```",
            "",
        ]
    )


def _seed_block(evaluation: Evaluation) -> str:
    from ctsdg.evaluation import seed_block

    return seed_block(evaluation)
