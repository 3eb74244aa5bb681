"""The ``ctsdg serve`` page in a real headless Chromium, driven the way a person uses it.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium
chromium-driver``); without them the test is skipped with that reason, except under CI
(``CI=true``), where a missing browser is a failure: ``.ci/run`` installs it.

Also the tool that took ``docs/images/serve.png`` (a real inpainting with the demo model)::

    .venv/bin/python -m tests.test_browser --checkpoint runs/demo --screenshot docs/images/serve.png
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from ctsdg.serve import Limits, create_app

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STROKE = ((150, 140), (310, 170))  # photo pixels: where the test paints
LOADED = "return arguments[0].complete && arguments[0].naturalWidth"
BRUSH = 40  # the page's default brush size, in screen pixels (= photo pixels at scale 1)


def find_browser() -> tuple[str, str] | None:
    """(browser, chromedriver) executables, or None."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a thread; yields the URL."""
    import uvicorn

    from ctsdg.serve.server import listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A headless Chromium under Selenium that records the browser console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    assert found is not None
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition, timeout: float = 60, what: str = "the page") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def paint_and_inpaint(driver, url: str, photo_path: Path, stroke=STROKE) -> Image.Image:
    """Open the page, load the photo, paint ``stroke``, press Inpaint; the result's pixels."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def testid(name: str):
        return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')

    driver.get(url)
    wait_for(lambda: "structure" in testid("model-info").text, what="the model's description")
    testid("image-input").send_keys(str(photo_path.resolve()))
    with Image.open(photo_path) as opened:
        width, height = opened.size
    wait_for(
        lambda: driver.execute_script("return arguments[0].width", testid("mask-canvas")) == width,
        what="the mask canvas at the photo's size",
    )
    canvas = testid("mask-canvas")
    rect = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", canvas)
    scale = rect["width"] / width  # screen pixels per photo pixel

    def offset(point: tuple[int, int]) -> tuple[int, int]:  # from the element's centre
        return round((point[0] - width / 2) * scale), round((point[1] - height / 2) * scale)

    (x0, y0), (x1, y1) = offset(stroke[0]), offset(stroke[1])
    actions = ActionChains(driver, duration=10).move_to_element_with_offset(canvas, x0, y0)
    actions.click_and_hold()
    steps = 8
    for i in range(1, steps + 1):
        actions.move_to_element_with_offset(
            canvas, round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps)
        )
    actions.release().perform()
    testid("inpaint-button").click()
    result = testid("result-image")
    wait_for(
        lambda: (
            result.is_displayed()
            and driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", result
            )
        ),
        what="the result image",
    )
    # The <img>'s own bytes (a blob: URL), decoded here: what the person would download.
    encoded = driver.execute_async_script(
        """const [img, done] = arguments;
        fetch(img.src).then(r => r.arrayBuffer()).then(buffer => {
          let s = ""; const bytes = new Uint8Array(buffer);
          for (let i = 0; i < bytes.length; i += 8192) {
            s += String.fromCharCode(...bytes.subarray(i, i + 8192));
          }
          done(btoa(s));
        }).catch(err => done("failed: " + err));""",
        result,
    )
    assert not encoded.startswith("failed"), encoded
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def distance_to_segment(shape: tuple[int, int], a, b) -> np.ndarray:
    """(H, W) distance of every pixel centre to the segment a-b (photo pixels)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5
    (ax, ay), (bx, by) = a, b
    t = ((xs - ax) * (bx - ax) + (ys - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    t = np.clip(t, 0, 1)
    return np.hypot(xs - (ax + t * (bx - ax)), ys - (ay + t * (by - ay)))


@pytest.mark.slow
def test_paint_inpaint_and_read_the_result_in_chromium(tmp_path: Path) -> None:
    require_browser()
    import torch

    from ctsdg.inference import Inpainter
    from ctsdg.models import Generator

    torch.manual_seed(0)
    inpainter = Inpainter(Generator(width=8), size=128)
    photo = Image.fromarray(data.chelsea())  # 451 x 300: not a multiple of 128
    photo_path = tmp_path / "chelsea.png"
    photo.save(photo_path)
    with running_server(create_app(inpainter, Limits())) as url, chromium() as driver:
        result = paint_and_inpaint(driver, url, photo_path)
        console = driver.get_log("browser")
    assert result.size == photo.size and result.mode == "RGB"
    changed = np.any(np.asarray(result) != np.asarray(photo), axis=-1)
    distance = distance_to_segment(changed.shape, *STROKE)
    # only around the stroke (its radius, plus a pixel of antialiased edge) ...
    assert not changed[distance > BRUSH / 2 + 1.5].any()
    # ... and the stroke itself was filled
    assert changed[distance < BRUSH / 2 - 2].mean() > 0.5
    errors = [e for e in console if e["level"] == "SEVERE"]
    assert not errors, errors


PAINTED = """const c = arguments[0];
const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] >= 128; return n;"""


def require_browser() -> None:
    if find_browser() is None:
        reason = "no chromium + chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)


@pytest.mark.slow
def test_token_prompt_tools_mask_file_and_readable_errors_in_chromium(tmp_path: Path) -> None:
    """The token form, undo / redo / eraser / clear / brush keys, a mask file, an API error."""
    require_browser()
    import torch
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from ctsdg.inference import Inpainter
    from ctsdg.models import Generator

    torch.manual_seed(0)
    inpainter = Inpainter(Generator(width=8), size=128)
    photo_path, mask_path = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(data.chelsea()).save(photo_path)  # 451 x 300
    holes = np.zeros((300, 451), np.uint8)
    holes[100:150, 200:260] = 255
    Image.fromarray(holes).save(mask_path)
    # max_pixels below the photo's: the inpainting is refused, and the page must say why
    app = create_app(inpainter, Limits(token="tok", max_pixels=100_000))
    with running_server(app) as url, chromium() as driver:

        def testid(name: str):
            return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')

        def painted() -> int:
            return driver.execute_script(PAINTED, testid("mask-canvas"))

        def keys(*sequence) -> None:
            chain = ActionChains(driver)
            for key in sequence:
                chain = chain.send_keys(key)
            chain.perform()

        driver.get(url)
        wait_for(lambda: driver.find_element(By.ID, "token-form").is_displayed(), what="token form")
        assert "token" in testid("message").text
        driver.find_element(By.ID, "token-input").send_keys("tok", Keys.ENTER)
        wait_for(lambda: "structure" in testid("model-info").text, what="the model after the token")
        testid("image-input").send_keys(str(photo_path))
        canvas = testid("mask-canvas")
        wait_for(lambda: driver.execute_script("return arguments[0].width", canvas) == 451)
        stroke = ActionChains(driver).move_to_element_with_offset(canvas, -50, 0).click_and_hold()
        stroke.move_by_offset(100, 0).release().perform()
        first = painted()
        assert first > 100 * 30  # a 100 px long, 40 px wide stroke
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
        assert painted() == 0
        redo = ActionChains(driver).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z")
        redo.key_up(Keys.SHIFT).key_up(Keys.CONTROL).perform()
        assert painted() == first
        testid("eraser-button").click()
        erase = ActionChains(driver).move_to_element_with_offset(canvas, 0, 0).click_and_hold()
        erase.move_by_offset(5, 0).release().perform()
        assert 0 < painted() < first
        size = int(testid("brush-size").get_attribute("value"))
        keys("]")
        assert int(testid("brush-size").get_attribute("value")) > size
        testid("clear-button").click()
        assert painted() == 0
        testid("mask-input").send_keys(str(mask_path))
        wait_for(lambda: painted() == 50 * 60, what="the mask file on the canvas")
        testid("inpaint-button").click()
        message = testid("message")
        wait_for(lambda: "413" in message.text, what="the API's error on the page")
        assert "--max-pixels" in message.text and "error" in message.get_attribute("class")
        console = driver.get_log("browser")
    # the only errors are the two refused requests (the page's own code raised nothing)
    errors = [e["message"] for e in console if e["level"] == "SEVERE"]
    assert len(errors) == 2 and "401" in errors[0] and "413" in errors[1], errors


def main() -> None:
    """Take the README's screenshot: a real inpainting with a real checkpoint."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--screenshot", default="docs/images/serve.png")
    args = parser.parse_args()
    from ctsdg.fileio import atomic_write
    from ctsdg.serve.server import load_inpainter

    inpainter, fmt = load_inpainter(args.checkpoint, "cpu")
    app = create_app(inpainter, Limits(), checkpoint=args.checkpoint, checkpoint_format=fmt)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ctsdg-shot-")))
        photo_path = folder / "chelsea.png"
        Image.fromarray(data.chelsea()).save(photo_path)
        url = stack.enter_context(running_server(app))
        driver = stack.enter_context(chromium(1000, 640))
        paint_and_inpaint(driver, url, photo_path, stroke=((255, 85), (330, 70)))
        png = driver.get_screenshot_as_png()
    atomic_write(args.screenshot, lambda p: p.write_bytes(png))
    print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
