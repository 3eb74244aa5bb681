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
import itertools
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


def element(driver, name: str):
    """The element with data-testid ``name``."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def rect(driver, element) -> dict:
    return driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", element)


def open_photo(driver, photo_path: Path) -> tuple[int, int]:
    """Load ``photo_path`` through ``image-input``; (width, height) once the page shows it."""
    with Image.open(photo_path) as opened:
        size = opened.size
    element(driver, "image-input").send_keys(str(photo_path.resolve()))
    current, canvas = element(driver, "current-image"), element(driver, "mask-canvas")
    wait_for(
        lambda: (
            driver.execute_script("return arguments[0].width", canvas) == size[0]
            and driver.execute_script(LOADED, current) == size[0]
            and photo_path.stem in element(driver, "message").text
        ),
        what=f"{photo_path.name} on the page",
    )
    return size


def screen_point(driver, point) -> tuple[int, int]:
    """Viewport coordinates of photo pixel ``point`` at the current zoom and pan."""
    canvas = element(driver, "mask-canvas")
    box = rect(driver, canvas)
    width = driver.execute_script("return arguments[0].width", canvas)
    scale = box["width"] / width  # screen pixels per photo pixel
    return round(box["x"] + point[0] * scale), round(box["y"] + point[1] * scale)


def drag(driver, points, button: int = 0, steps: int = 8) -> None:
    """Press ``button`` at the first viewport point, move through the others, release."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver, duration=10)
    actions.pointer_action.move_to_location(*points[0]).pointer_down(button)
    for (xa, ya), (xb, yb) in itertools.pairwise(points):
        for i in range(1, steps + 1):
            t = i / steps
            actions.pointer_action.move_to_location(
                round(xa + (xb - xa) * t), round(ya + (yb - ya) * t)
            )
    actions.pointer_action.pointer_up(button)
    actions.perform()


def paint(driver, stroke) -> None:
    """A brush stroke through photo pixels ``stroke`` (left button)."""
    drag(driver, [screen_point(driver, p) for p in stroke])


def image_bytes(driver, img) -> bytes:
    """The bytes behind an ``<img>``'s (blob:) URL: what the person would download."""
    encoded = driver.execute_async_script(
        """const [img, done] = arguments;
        fetch(img.src).then(r => r.arrayBuffer()).then(buffer => {
          let s = ""; const bytes = new Uint8Array(buffer);
          for (let i = 0; i < bytes.length; i += 8192) {
            s += String.fromCharCode(...bytes.subarray(i, i + 8192));
          }
          done(btoa(s));
        }).catch(err => done("failed: " + err));""",
        img,
    )
    assert not encoded.startswith("failed"), encoded
    return base64.b64decode(encoded)


def pixels(driver, name: str) -> np.ndarray:
    """The decoded pixels of the ``<img>`` with data-testid ``name``."""
    with Image.open(io.BytesIO(image_bytes(driver, element(driver, name)))) as opened:
        return np.asarray(opened.convert("RGB"))


def press_inpaint_and_wait(driver) -> Image.Image:
    """Press Inpaint; the new result (``result-image``, also ``current-image``) once it shows."""
    result, current = element(driver, "result-image"), element(driver, "current-image")
    before = result.get_attribute("src")
    element(driver, "inpaint-button").click()
    wait_for(
        lambda: (
            (src := result.get_attribute("src")) != before
            and src == current.get_attribute("src")
            and driver.execute_script(LOADED, current)
            and driver.execute_script(LOADED, result)
        ),
        what="the result image",
    )
    return Image.open(io.BytesIO(image_bytes(driver, result)))


def paint_and_inpaint(driver, url: str, photo_path: Path, stroke=STROKE) -> Image.Image:
    """Open the page, load the photo, paint ``stroke``, press Inpaint; the result's pixels."""
    driver.get(url)
    wait_for(lambda: "structure" in element(driver, "model-info").text, what="the model")
    open_photo(driver, photo_path)
    paint(driver, stroke)
    return press_inpaint_and_wait(driver)


def distance_to_segment(shape: tuple[int, int], a, b) -> np.ndarray:
    """(H, W) distance of every pixel centre to the segment a-b (photo pixels)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]] + 0.5
    (ax, ay), (bx, by) = a, b
    t = ((xs - ax) * (bx - ax) + (ys - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    t = np.clip(t, 0, 1)
    return np.hypot(xs - (ax + t * (bx - ax)), ys - (ay + t * (by - ay)))


PAINTED = """const c = arguments[0];
const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] >= 128; return n;"""
MASK = """const c = arguments[0];
const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
const out = new Uint8Array(c.width * c.height);
for (let i = 0; i < out.length; i++) out[i] = d[4 * i + 3] >= 128 ? 1 : 0;
let s = "";
for (let i = 0; i < out.length; i += 8192) s += String.fromCharCode(...out.subarray(i, i + 8192));
return btoa(s);"""


def require_browser() -> None:
    if find_browser() is None:
        reason = "no chromium + chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)


def painted(driver) -> int:
    return driver.execute_script(PAINTED, element(driver, "mask-canvas"))


def mask(driver) -> np.ndarray:
    """(H, W) bool: the painted pixels of the mask canvas."""
    canvas = element(driver, "mask-canvas")
    width, height = driver.execute_script(
        "return [arguments[0].width, arguments[0].height]", canvas
    )
    flat = np.frombuffer(base64.b64decode(driver.execute_script(MASK, canvas)), np.uint8)
    return flat.reshape(height, width).astype(bool)


def keys(driver, *sequence, modifiers=()) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in modifiers:
        chain = chain.key_down(key)
    for key in sequence:
        chain = chain.send_keys(key)
    for key in reversed(modifiers):
        chain = chain.key_up(key)
    chain.perform()


def ctrl(driver, key: str, shift: bool = False) -> None:
    from selenium.webdriver.common.keys import Keys

    keys(driver, key, modifiers=(Keys.CONTROL, Keys.SHIFT) if shift else (Keys.CONTROL,))


class Model:
    """What the test's server does: counts calls, records the images it got, can be held back."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.images: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        self.gate.set()
        self.started.clear()
        self.finished.clear()
        self.images.clear()

    def hold(self) -> None:
        """The next requests wait (a slow model) until `release`."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()


def slow_inpainter(model: Model):
    """A small random CTSDG whose `inpaint` reports to ``model`` and waits for its gate."""
    import torch

    from ctsdg.inference import Inpainter
    from ctsdg.models import Generator

    class Held(Inpainter):
        def inpaint(self, image, mask, **options):
            model.images.append(np.asarray(image.convert("RGB")))
            model.started.set()
            assert model.gate.wait(60), "the test never released the model"
            try:
                return super().inpaint(image, mask, **options)
            finally:
                model.finished.set()

    torch.manual_seed(0)
    return Held(Generator(width=8), size=128)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module (1280 x 900), downloads going to its folder."""
    require_browser()
    downloads = tmp_path_factory.mktemp("downloads")
    with chromium() as driver:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.downloads = downloads
        yield driver


@pytest.fixture(scope="module")
def served():
    """(url, Model): one server for the module, its model controlled by the tests."""
    require_browser()
    model = Model()
    with running_server(create_app(slow_inpainter(model), Limits())) as url:
        yield url, model


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    cat = Image.fromarray(data.chelsea())  # 451 x 300: not a multiple of 128
    coffee = Image.fromarray(data.coffee()).resize((320, 213))
    paths = {
        "png": folder / "chelsea.png",
        "jpeg": folder / "chelsea.jpg",
        "webp": folder / "chelsea.webp",
        "other": folder / "coffee.png",
    }
    cat.save(paths["png"])
    cat.save(paths["jpeg"], quality=90)
    cat.save(paths["webp"], quality=90)
    coffee.save(paths["other"])
    return paths


@pytest.fixture
def page(browser, served):
    """The page freshly loaded, the model answering at once; (driver, model)."""
    url, model = served
    model.reset()
    browser.set_window_size(1280, 900)
    browser.get(url)
    wait_for(lambda: "structure" in element(browser, "model-info").text, what="the model")
    browser.get_log("browser")  # only this test's console from here on
    yield browser, model
    model.release()
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a.astype(int) != b.astype(int), axis=-1)


@pytest.mark.slow
def test_paint_inpaint_and_read_the_result_in_chromium(page, photos) -> None:
    driver, _ = page
    open_photo(driver, photos["png"])
    paint(driver, STROKE)
    result = press_inpaint_and_wait(driver)
    photo = np.asarray(Image.open(photos["png"]))
    assert result.size == (451, 300) and result.mode == "RGB"
    changed = changed_pixels(np.asarray(result), photo)
    distance = distance_to_segment(changed.shape, *STROKE)
    # only around the stroke (its radius, plus a pixel of antialiased edge) ...
    assert not changed[distance > BRUSH / 2 + 1.5].any()
    # ... and the stroke itself was filled
    assert changed[distance < BRUSH / 2 - 2].mean() > 0.5
    # the result is now the image being edited, and the mask starts empty on it
    assert np.array_equal(pixels(driver, "current-image"), np.asarray(result))
    assert painted(driver) == 0


@pytest.mark.slow
def test_double_click_sends_one_request(page, photos) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    driver, model = page
    open_photo(driver, photos["png"])
    paint(driver, STROKE)
    model.hold()
    ActionChains(driver).double_click(element(driver, "inpaint-button")).perform()
    assert model.started.wait(30)
    assert element(driver, "cancel-button").is_displayed()
    assert not element(driver, "inpaint-button").is_enabled()
    time.sleep(0.3)  # a second request, had one been sent, would be queued by now
    model.release()
    current = element(driver, "current-image")
    wait_for(
        lambda: element(driver, "result-image").get_attribute("src") == current.get_attribute("src")
    )
    time.sleep(0.3)
    assert len(model.images) == 1


@pytest.mark.slow
def test_result_is_the_working_image_with_an_undo_history(page, photos) -> None:
    """Two passes: the second paints on and sends the first result; undo walks back to the photo."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver, model = page
    photo = np.asarray(Image.open(photos["png"]))
    open_photo(driver, photos["png"])
    assert "disabled" in element(driver, "download-link").get_attribute("class")
    first_stroke, second_stroke = ((60, 60), (140, 80)), ((300, 220), (400, 240))
    paint(driver, first_stroke)
    first_mask = mask(driver)
    first = np.asarray(press_inpaint_and_wait(driver))
    assert changed_pixels(first, photo).any()
    paint(driver, second_stroke)
    second_mask = mask(driver)
    # the second stroke is painted on the result: the first mask is gone, the result still shows
    assert not (second_mask & first_mask).any() and second_mask.sum() > 1000
    assert np.array_equal(pixels(driver, "current-image"), first)
    second = np.asarray(press_inpaint_and_wait(driver))
    assert np.array_equal(model.images[1], first)  # the second request sent the first result
    outside = distance_to_segment(second_mask.shape, *second_stroke) > BRUSH / 2 + 1.5
    assert np.array_equal(second[outside], first[outside])  # the first result's pixels kept
    assert changed_pixels(second, first)[~outside].any()
    # Compare shows the original photo over the current image while held
    ActionChains(driver).key_down("c").perform()
    assert element(driver, "source-image").is_displayed()
    assert np.array_equal(pixels(driver, "source-image"), photo)
    ActionChains(driver).key_up("c").perform()
    assert not element(driver, "source-image").is_displayed()
    # undo: the second inpainting (back to the first result with the mask that produced it) ...
    ctrl(driver, "z")
    assert np.array_equal(pixels(driver, "current-image"), first)
    assert np.array_equal(mask(driver), second_mask)
    ctrl(driver, "z")  # ... the second stroke ...
    assert painted(driver) == 0
    ctrl(driver, "z")  # ... the first inpainting: the original photo, with the first mask
    assert np.array_equal(pixels(driver, "current-image"), photo)
    assert np.array_equal(mask(driver), first_mask)
    assert "disabled" in element(driver, "download-link").get_attribute("class")
    # redo re-applies both inpaintings
    ctrl(driver, "z", shift=True)
    assert np.array_equal(pixels(driver, "current-image"), first) and painted(driver) == 0
    ctrl(driver, "y")
    ctrl(driver, "y")
    assert np.array_equal(pixels(driver, "current-image"), second)
    assert len(model.images) == 2


@pytest.mark.slow
def test_a_late_result_never_lands_on_a_new_photo_and_cancel_stops_waiting(page, photos) -> None:
    driver, model = page
    open_photo(driver, photos["png"])
    paint(driver, STROKE)
    model.hold()
    element(driver, "inpaint-button").click()
    assert model.started.wait(30)
    coffee = np.asarray(Image.open(photos["other"]))
    open_photo(driver, photos["other"])  # while the first photo's request runs
    assert "cancelled" in element(driver, "message").text
    model.release()
    assert model.finished.wait(30)
    time.sleep(0.5)  # the server's answer, had the page waited for it, has arrived
    assert np.array_equal(pixels(driver, "current-image"), coffee)
    assert element(driver, "result-image").get_attribute("src") in (None, "")
    assert element(driver, "inpaint-button").is_enabled()
    # Cancel: the page stops waiting; the answer that comes later is dropped
    model.reset()
    paint(driver, ((50, 50), (150, 60)))
    model.hold()
    element(driver, "inpaint-button").click()
    assert model.started.wait(30)
    element(driver, "cancel-button").click()
    assert "cancelled" in element(driver, "message").text
    assert element(driver, "inpaint-button").is_enabled()
    assert not element(driver, "cancel-button").is_displayed()
    model.release()
    assert model.finished.wait(30)
    time.sleep(0.5)
    assert np.array_equal(pixels(driver, "current-image"), coffee)
    assert element(driver, "result-image").get_attribute("src") in (None, "")
    assert painted(driver) > 0  # the mask is still there for another try
    # Close (in the menu) while a request runs: the page goes back to empty and stays so
    model.reset()
    model.hold()
    element(driver, "inpaint-button").click()
    assert model.started.wait(30)
    element(driver, "menu-button").click()
    element(driver, "close-button").click()
    assert "cancelled" in element(driver, "message").text
    model.release()
    assert model.finished.wait(30)
    time.sleep(0.5)
    assert not element(driver, "mask-canvas").is_displayed()
    assert element(driver, "current-image").get_attribute("src") in (None, "")
    assert element(driver, "result-image").get_attribute("src") in (None, "")


def zoom_percent(driver) -> int:
    return int(element(driver, "zoom-level").text.rstrip("%"))


def touch(driver, kind: str, points) -> None:
    """A CDP touch event (touchStart / touchMove / touchEnd) with ``points`` [(x, y), ...]."""
    driver.execute_cdp_cmd(
        "Input.dispatchTouchEvent",
        {
            "type": kind,
            "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)],
        },
    )


@pytest.mark.slow
def test_zoom_pan_pinch_and_a_brush_in_screen_pixels(page, photos) -> None:
    from selenium.webdriver.common.action_chains import ActionChains, ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    driver, _ = page
    width, height = open_photo(driver, photos["png"])
    canvas = element(driver, "mask-canvas")
    fitted = rect(driver, canvas)
    assert zoom_percent(driver) == 100 and round(fitted["width"]) == width  # small: not enlarged
    # the wheel zooms at the pointer: the photo point under it stays under it
    x, y = screen_point(driver, (100, 80))
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_viewport(x, y), 0, -400).perform()
    wait_for(lambda: zoom_percent(driver) > 150, what="the wheel's zoom")
    zoomed = rect(driver, canvas)
    zoom = zoomed["width"] / width
    assert abs(zoom * 100 - zoom_percent(driver)) <= 1
    assert abs(zoomed["height"] / height - zoom) < 0.01
    assert abs((x - zoomed["x"]) / zoom - (x - fitted["x"])) < 1.5
    assert abs((y - zoomed["y"]) / zoom - (y - fitted["y"])) < 1.5
    # the brush is in screen pixels: 40 on screen is 40 / zoom photo pixels wide
    paint(driver, ((150, 150), (250, 150)))
    assert abs(rect(driver, element(driver, "brush-cursor"))["width"] - BRUSH) < 1
    column = mask(driver)[:, 200]
    assert abs(column.sum() - BRUSH / zoom) <= 2, (column.sum(), zoom)
    ctrl(driver, "z")
    # fit restores the first view; so does Esc
    element(driver, "fit-button").click()
    assert rect(driver, canvas) == fitted and zoom_percent(driver) == 100
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_viewport(x, y), 0, -400).perform()
    wait_for(lambda: zoom_percent(driver) > 150, what="the wheel's zoom")
    keys(driver, Keys.ESCAPE)
    assert rect(driver, canvas) == fitted
    # Space + drag and a middle-button drag pan, and paint nothing
    start = screen_point(driver, (200, 150))
    ActionChains(driver).key_down(Keys.SPACE).perform()
    drag(driver, [start, (start[0] + 60, start[1] + 30)])
    ActionChains(driver).key_up(Keys.SPACE).perform()
    moved = rect(driver, canvas)
    assert (round(moved["x"] - fitted["x"]), round(moved["y"] - fitted["y"])) == (60, 30)
    drag(driver, [start, (start[0] - 60, start[1] - 30)], button=1)
    assert rect(driver, canvas) == fitted
    assert painted(driver) == 0
    # a pinch zooms around the fingers, a two-finger drag pans; neither paints
    cx, cy = screen_point(driver, (225, 150))
    touch(driver, "touchStart", [(cx - 40, cy)])
    touch(driver, "touchStart", [(cx - 40, cy), (cx + 40, cy)])
    for step in range(1, 6):
        touch(driver, "touchMove", [(cx - 40 - 16 * step, cy), (cx + 40 + 16 * step, cy)])
    touch(driver, "touchEnd", [])
    pinched = rect(driver, canvas)
    assert pinched["width"] / width > 1.8 and zoom_percent(driver) > 180
    assert painted(driver) == 0
    touch(driver, "touchStart", [(cx - 40, cy), (cx + 40, cy)])
    for step in range(1, 6):
        touch(
            driver,
            "touchMove",
            [(cx - 40 + 10 * step, cy + 8 * step), (cx + 40 + 10 * step, cy + 8 * step)],
        )
    touch(driver, "touchEnd", [])
    panned = rect(driver, canvas)
    assert abs(panned["width"] - pinched["width"]) < 1
    assert (round(panned["x"] - pinched["x"]), round(panned["y"] - pinched["y"])) == (50, 40)
    assert painted(driver) == 0
    # one finger paints
    touch(driver, "touchStart", [(cx, cy)])
    for step in range(1, 6):
        touch(driver, "touchMove", [(cx + 8 * step, cy)])
    touch(driver, "touchEnd", [])
    assert painted(driver) > 0


def downloaded(folder: Path, suffix: str, before: set[str]) -> Path:
    """The new file ending in ``suffix`` in ``folder``, once Chromium has finished writing it."""

    def done():
        new = [p for p in folder.iterdir() if p.name not in before and p.name.endswith(suffix)]
        if not new or not new[0].stat().st_size:
            return None
        size = new[0].stat().st_size
        time.sleep(0.2)
        return new[0] if new[0].stat().st_size == size else None

    return wait_for(done, timeout=30, what=f"a downloaded *{suffix}")


@pytest.mark.slow
def test_the_photo_s_own_format_downloads_mask_and_clipboard(page, photos) -> None:
    driver, _ = page
    folder = driver.downloads
    open_photo(driver, photos["jpeg"])
    assert "JPEG" in element(driver, "message").text
    paint(driver, STROKE)
    painted_mask = mask(driver)
    result = press_inpaint_and_wait(driver)
    assert result.format == "JPEG" and result.size == (451, 300)
    kind = driver.execute_async_script(
        "fetch(arguments[0].href).then(r => r.blob()).then(b => arguments[1](b.type))",
        element(driver, "download-link"),
    )
    assert kind == "image/jpeg"
    assert element(driver, "download-link").get_attribute("download") == "chelsea-inpainted.jpg"
    seen = {p.name for p in folder.iterdir()}
    element(driver, "download-link").click()
    saved = downloaded(folder, ".jpg", seen)
    assert saved.name == "chelsea-inpainted.jpg"
    with Image.open(saved) as opened:
        assert opened.format == "JPEG" and opened.size == (451, 300)
    # Ctrl+S downloads too
    first_bytes = saved.read_bytes()
    saved.unlink()  # Chromium saves a download of the same name over the old one
    ctrl(driver, "s")
    assert downloaded(folder, ".jpg", set()).read_bytes() == first_bytes
    # the mask, from the menu (after undoing the inpainting): white where the stroke was
    seen = {p.name for p in folder.iterdir()}
    ctrl(driver, "z")
    element(driver, "menu-button").click()
    element(driver, "mask-download-button").click()
    saved_mask = downloaded(folder, "-mask.png", seen)
    with Image.open(saved_mask) as opened:
        assert np.array_equal(np.asarray(opened.convert("L")) == 255, painted_mask)
    # copy to the clipboard (PNG, the only image type the clipboard takes), read back
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    ctrl(driver, "y")  # the result again
    element(driver, "menu-button").click()
    element(driver, "copy-button").click()
    wait_for(lambda: "copied" in element(driver, "message").text, what="the copy")
    copied = driver.execute_async_script(
        """const done = arguments[0];
        navigator.clipboard.read().then(items => items[0].getType("image/png"))
          .then(b => createImageBitmap(b)).then(i => done([i.width, i.height]))
          .catch(err => done(String(err)));"""
    )
    assert copied == [451, 300]
    # a WebP photo comes back as WebP, a PNG one as PNG
    for name, fmt, ext in (("webp", "WEBP", "webp"), ("png", "PNG", "png")):
        open_photo(driver, photos[name])
        paint(driver, STROKE)
        assert press_inpaint_and_wait(driver).format == fmt
        assert element(driver, "download-link").get_attribute("download").endswith(f".{ext}")


@pytest.mark.slow
def test_layout_help_dark_mode_brush_preview_and_touch_hint(page, photos) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, _ = page
    open_photo(driver, photos["png"])
    toolbar = element(driver, "stage").find_element(By.XPATH, "preceding-sibling::nav")
    controls = [
        c
        for c in toolbar.find_elements(By.CSS_SELECTOR, "button, .button, input[type=range]")
        if c.is_displayed()
    ]
    boxes = [rect(driver, c) for c in controls]
    # one row at 1280 px, every target at least 44 px
    assert len({round(b["y"]) for b in boxes}) == 1, sorted({round(b["y"]) for b in boxes})
    small = [
        (c.text, b["width"], b["height"])
        for c, b in zip(controls, boxes, strict=True)
        if min(b["width"], b["height"]) < 44
    ]
    assert not small, small
    # the rarely used controls are in the menu; the strategies in plain words, `original` too
    assert not element(driver, "strategy").is_displayed()
    element(driver, "menu-button").click()
    assert (
        element(driver, "strategy").is_displayed()
        and element(driver, "mask-download-button").is_displayed()
    )
    options = {
        o.get_attribute("value"): o.text
        for o in element(driver, "strategy").find_elements(By.TAG_NAME, "option")
    }
    assert set(options) == {"auto", "resize", "crop", "original"}
    assert "Full resolution" in options["original"] and "Shrink" in options["resize"]
    keys(driver, Keys.ESCAPE)
    assert not element(driver, "menu").is_displayed()
    # the ? dialog
    keys(driver, "?")
    dialog = element(driver, "help-dialog")
    assert dialog.is_displayed() and "Ctrl+S" in dialog.text and "Space" in dialog.text
    keys(driver, Keys.ESCAPE)
    assert not dialog.is_displayed()
    # the brush preview while the size slider moves: the brush's size, on the stage
    slider = element(driver, "brush-size")
    slider.send_keys(Keys.ARROW_RIGHT * 10)
    preview = element(driver, "brush-cursor")
    assert preview.is_displayed() and "preview" in preview.get_attribute("class")
    assert abs(rect(driver, preview)["width"] - int(slider.get_attribute("value"))) < 1
    wait_for(lambda: not preview.is_displayed(), timeout=5, what="the preview to go")

    # dark mode when the system asks for it
    def background() -> list[int]:
        colour = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        return [int(v) for v in colour[colour.index("(") + 1 : -1].split(",")[:3]]

    assert min(background()) > 200
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        assert max(background()) < 60
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    # on a touch screen, no Ctrl+V hint
    element(driver, "menu-button").click()
    element(driver, "close-button").click()
    hint = driver.find_element(By.ID, "empty-hint")
    assert "Ctrl+V" in hint.text
    driver.execute_cdp_cmd(
        "Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5}
    )
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "hover", "value": "none"}, {"name": "pointer", "value": "coarse"}]},
    )
    try:
        assert "Ctrl+V" not in hint.text and "Open a photo" in hint.text
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})


@pytest.mark.slow
def test_token_prompt_tools_mask_file_and_readable_errors_in_chromium(
    browser, tmp_path: Path
) -> None:
    """The token form (missing, then wrong), undo / redo / eraser / clear / brush keys, a mask
    file, an API error, and an error message cleared by the next action that works."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    photo_path, mask_path = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(data.chelsea()).save(photo_path)  # 451 x 300
    holes = np.zeros((300, 451), np.uint8)
    holes[100:150, 200:260] = 255
    Image.fromarray(holes).save(mask_path)
    # max_pixels below the photo's: the inpainting is refused, and the page must say why
    app = create_app(slow_inpainter(Model()), Limits(token="tok", max_pixels=100_000))
    with running_server(app) as url:
        driver.get_log("browser")
        driver.get(url)
        wait_for(lambda: driver.find_element(By.ID, "token-form").is_displayed(), what="token form")
        message = element(driver, "message")
        assert "needs an access token" in message.text
        driver.find_element(By.ID, "token-input").send_keys("wrong", Keys.ENTER)
        wait_for(lambda: "not accepted" in message.text, what="the wrong token's message")
        assert driver.find_element(By.ID, "token-form").is_displayed()
        token_input = driver.find_element(By.ID, "token-input")
        token_input.clear()
        token_input.send_keys("tok", Keys.ENTER)
        wait_for(
            lambda: "structure" in element(driver, "model-info").text,
            what="the model after the token",
        )
        assert message.text == ""  # the error went with the action that worked
        open_photo(driver, photo_path)
        (x, y) = screen_point(driver, (225, 150))
        drag(driver, [(x - 50, y), (x + 50, y)])
        first = painted(driver)
        assert first > 100 * 30  # a 100 px long, 40 px wide stroke
        ctrl(driver, "z")
        assert painted(driver) == 0
        ctrl(driver, "z", shift=True)
        assert painted(driver) == first
        element(driver, "eraser-button").click()
        drag(driver, [(x, y), (x + 5, y)])
        assert 0 < painted(driver) < first
        size = int(element(driver, "brush-size").get_attribute("value"))
        keys(driver, "]")
        assert int(element(driver, "brush-size").get_attribute("value")) > size
        element(driver, "clear-button").click()
        assert painted(driver) == 0
        element(driver, "mask-input").send_keys(str(mask_path))
        wait_for(lambda: painted(driver) == 50 * 60, what="the mask file on the canvas")
        element(driver, "inpaint-button").click()
        wait_for(lambda: "413" in message.text, what="the API's error on the page")
        assert "--max-pixels" in message.text and "error" in message.get_attribute("class")
        element(driver, "brush-button").click()
        drag(driver, [(x, y), (x + 5, y)])  # the next action that works clears the error
        assert message.text == "" and "error" not in message.get_attribute("class")
        console = driver.get_log("browser")
    # the only errors are the three refused requests (the page's own code raised nothing)
    errors = [e["message"] for e in console if e["level"] == "SEVERE"]
    assert len(errors) == 3 and "401" in errors[0] and "401" in errors[1], errors
    assert "413" in errors[2], errors


def main() -> None:
    """Take the README's screenshot: a real inpainting with a real checkpoint."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--screenshot", default="docs/images/serve.png")
    parser.add_argument("--phone-screenshot", help="also the same at 390 x 844 (a phone)")
    args = parser.parse_args()
    from ctsdg.fileio import atomic_write
    from ctsdg.serve.server import load_inpainter

    inpainter, fmt = load_inpainter(args.checkpoint, "cpu")
    app = create_app(inpainter, Limits(), checkpoint=args.checkpoint, checkpoint_format=fmt)
    shots = [(args.screenshot, (1280, 800), 2)]
    if args.phone_screenshot:
        shots.append((args.phone_screenshot, (390, 844), 0))
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ctsdg-shot-")))
        photo_path = folder / "chelsea.png"
        Image.fromarray(data.chelsea()).save(photo_path)
        url = stack.enter_context(running_server(app))
        for path, (width, height), zoom_steps in shots:
            with chromium(max(width, 500), height) as driver:  # headless: at least 500 wide
                if width < 500:
                    driver.execute_cdp_cmd(
                        "Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
                    )
                    coarse = [
                        {"name": "hover", "value": "none"},
                        {"name": "pointer", "value": "coarse"},
                    ]
                    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": coarse})
                    driver.execute_cdp_cmd(
                        "Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5}
                    )
                driver.get(url)
                wait_for(
                    lambda d=driver: (
                        "structure" in element(d, "model-info").get_attribute("textContent")
                    )
                )
                open_photo(driver, photo_path)
                keys(driver, *"+" * zoom_steps)  # the photo larger, as a person would work
                paint(driver, ((255, 85), (330, 70)))  # over the cat's forehead
                press_inpaint_and_wait(driver)
                png = driver.get_screenshot_as_png()
            atomic_write(path, lambda p, png=png: p.write_bytes(png))
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
