"""Clients written for IOPaint: its request on ``POST /api/v1/inpaint`` (`ctsdg.serve.iopaint`),
and strategy ``original`` over HTTP."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from skimage import data
from starlette.testclient import TestClient

from ctsdg.checkpoints import ModelConfig, save_weights
from ctsdg.errors import InputError
from ctsdg.inference import Inpainter, IOPaintStrategy
from ctsdg.models import Generator
from ctsdg.serve import Limits, create_app
from ctsdg.serve.iopaint import IOPAINT_FIELDS
from ctsdg.serve.uploads import parse_request

INPAINT = "/api/v1/inpaint"
MAX_ORIGINAL = 256 * 384  # the test server's --max-original-pixels


@pytest.fixture(scope="module")
def inpainter(tmp_path_factory: pytest.TempPathFactory) -> Inpainter:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_weights(
        path, model=ModelConfig(8), structure="correct", generator=Generator(width=8).state_dict()
    )
    return Inpainter.from_checkpoint(path, size=128, max_original_pixels=MAX_ORIGINAL)


@pytest.fixture(scope="module")
def client(inpainter: Inpainter):
    limits = Limits(max_upload_mb=2, max_pixels=200_000, max_original_pixels=MAX_ORIGINAL)
    with TestClient(create_app(inpainter, limits)) as c:
        yield c


def photo(width: int, height: int) -> Image.Image:
    return Image.fromarray(data.chelsea()).resize((width, height))


def brush_mask(width: int, height: int) -> Image.Image:
    """A mask as IOPaint's web app draws it: strokes of its brush colour #ffcc00bb (yellow, alpha
    0xbb) with round caps on a transparent canvas (web_app/src/lib/const.ts, utils.ts)."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(mask)
    draw.line([(120, 60), (200, 90)], fill=(255, 204, 0, 187), width=40, joint="curve")
    draw.line(
        [(width - 80, height - 70), (width - 40, height - 50)], fill=(255, 204, 0, 187), width=30
    )
    return mask


def data_url(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def web_app_body(image: str, mask: str) -> dict:
    """The JSON IOPaint's web app posts (web_app/src/lib/api.ts ``inpaint``) with the settings it
    starts with (web_app/src/lib/states.ts), spelling mistakes included."""
    return {
        "image": image,
        "mask": mask,
        "ldm_steps": 30,
        "ldm_sampler": "ddim",
        "zits_wireframe": True,
        "cv2_flag": "INPAINT_NS",
        "cv2_radius": 5,
        "hd_strategy": "Crop",
        "hd_strategy_crop_triger_size": 640,
        "hd_strategy_crop_margin": 128,
        "hd_trategy_resize_imit": 2048,
        "prompt": "",
        "negative_prompt": "out of frame, lowres, error, cropped, worst quality",
        "use_croper": False,
        "croper_x": 0,
        "croper_y": 0,
        "croper_height": 512,
        "croper_width": 512,
        "use_extender": False,
        "extender_x": 0,
        "extender_y": 0,
        "extender_height": 512,
        "extender_width": 512,
        "sd_mask_blur": 12,
        "sd_strength": 1.0,
        "sd_steps": 50,
        "sd_guidance_scale": 7.5,
        "sd_sampler": "DPM++ 2M",
        "sd_seed": -1,
        "sd_match_histograms": False,
        "sd_lcm_lora": False,
        "paint_by_example_example_image": None,
        "p2p_image_guidance_scale": 1.5,
        "enable_controlnet": False,
        "controlnet_conditioning_scale": 0.4,
        "controlnet_method": "lllyasviel/control_v11p_sd15_canny",
        "enable_brushnet": False,
        "brushnet_method": "random_mask",
        "brushnet_conditioning_scale": 1.0,
        "powerpaint_task": "text-guided",
    }


def holes_of(mask: Image.Image) -> np.ndarray:
    rgba = np.asarray(mask)
    return (np.asarray(mask.convert("L")) >= 128) & (rgba[..., 3] >= 128)


def test_the_web_apps_body_gets_the_inpainted_png_with_x_seed(client, inpainter) -> None:
    image, mask = photo(700, 280), brush_mask(700, 280)
    assert set(web_app_body("", "")) <= set(IOPAINT_FIELDS)
    response = client.post(
        INPAINT, json=web_app_body(data_url(image, "PNG"), data_url(mask, "PNG"))
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "42"  # sd_seed -1: IOPaint's default seed
    result = np.asarray(Image.open(io.BytesIO(response.content)))
    before, holes = np.asarray(image), holes_of(mask)
    assert result.shape == before.shape
    np.testing.assert_array_equal(result[~holes], before[~holes])
    assert np.any(result != before, axis=-1)[holes].mean() > 0.5
    # what the web app meant: Crop above 640 px with a 128 px margin (its misspelt names)
    meant = IOPaintStrategy("Crop", crop_margin=128, crop_trigger_size=640, resize_limit=2048)
    np.testing.assert_array_equal(result, np.asarray(inpainter.inpaint(image, mask, iopaint=meant)))


def test_a_jpeg_comes_back_as_jpeg_and_bare_base64_is_read(client) -> None:
    image, mask = photo(300, 200), brush_mask(300, 200)
    body = web_app_body(data_url(image, "JPEG"), data_url(mask, "PNG").partition(",")[2])
    body["sd_seed"] = 1234
    body["hd_strategy"] = "Original"
    response = client.post(INPAINT, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-seed"] == "1234"
    assert Image.open(io.BytesIO(response.content)).size == (300, 200)
    body["format"] = "webp"  # ctsdg's own field still decides when it is sent
    assert client.post(INPAINT, json=body).headers["content-type"] == "image/webp"


def test_an_iopaint_mask_is_read_by_its_gray_level_alone(client) -> None:
    """A stroke's faint anti-aliased edge (alpha < 128) is a hole to IOPaint, which drops the
    alpha; ctsdg's own requests need a hole to be opaque too."""
    image, mask = photo(300, 200), Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    mask.paste((255, 204, 0, 100), (100, 50, 180, 110))  # yellow, alpha 100
    body = web_app_body(data_url(image, "PNG"), data_url(mask, "PNG"))
    filled = np.asarray(Image.open(io.BytesIO(client.post(INPAINT, json=body).content)))
    assert np.any(filled != np.asarray(image), axis=-1)[50:110, 100:180].mean() > 0.5
    del body["ldm_steps"], body["hd_strategy"]  # still IOPaint's: one of its fields suffices
    again = client.post(INPAINT, json=body).content
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(again))), filled)
    ctsdg = client.post(INPAINT, json={"image": body["image"], "mask": body["mask"]})
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(ctsdg.content))), image)


def request_of(body: dict):
    text = json.dumps({"image": "AAAA", "mask": "AAAA", **body})
    return parse_request("application/json", text.encode())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"hd_strategy": "Original"}, IOPaintStrategy("Original")),
        ({"hd_strategy": "resize", "hd_strategy_resize_limit": 640},
         IOPaintStrategy("Resize", resize_limit=640)),
        ({"hd_strategy": "Crop", "hd_strategy_crop_margin": 32,
          "hd_strategy_crop_trigger_size": 500},
         IOPaintStrategy("Crop", crop_margin=32, crop_trigger_size=500)),
        ({"hd_strategy_crop_triger_size": 640, "hd_trategy_resize_imit": 2048.0},
         IOPaintStrategy("Crop", crop_trigger_size=640, resize_limit=2048)),  # the web app's names
        ({"hd_strategy_crop_triger_size": 640, "hd_strategy_crop_trigger_size": 900},
         IOPaintStrategy("Crop", crop_trigger_size=900)),  # the right spelling wins
        ({"ldm_steps": 20}, IOPaintStrategy()),  # IOPaint's defaults: Crop, 128, 800, 1280
        ({"sd_freeu": False, "sd_freeu_config": {"s1": 0.9}, "strategy": "original"}, None),
    ],
)  # fmt: skip
def test_iopaint_fields_map_to_its_strategies(body: dict, expected) -> None:
    request = request_of(body)
    assert request.iopaint == expected
    assert request.format is None and request.seed == 42  # the input's format; X-Seed
    assert request.strategy == body.get("strategy", "auto")


def test_ctsdg_requests_keep_their_meaning() -> None:
    request = request_of({"strategy": "crop"})
    assert (request.iopaint, request.seed, request.format) == (None, None, "png")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"strategyy": "crop"}, ["unknown field 'strategyy'", "strategy, format"]),
        ({"ldm_stepz": 20}, ["unknown field 'ldm_stepz'"]),
        ({"hd_strategy_crop_margn": 20}, ["unknown field 'hd_strategy_crop_margn'"]),
        ({"hd_strategy": "Tile"}, ["hd_strategy: expected one of Original, Resize, Crop", "Tile"]),
        ({"hd_strategy": 3}, ["hd_strategy: expected one of"]),
        ({"hd_strategy_crop_margin": -5}, ["hd_strategy_crop_margin: expected at least 0"]),
        ({"hd_trategy_resize_imit": "big"}, ["hd_trategy_resize_imit: expected an integer"]),
        ({"hd_strategy_resize_limit": True}, ["expected an integer"]),
        ({"sd_seed": 1.5}, ["sd_seed: expected an integer"]),
        ({"hd_strategy": "Crop", "strategy": "crop"}, ["strategy and hd_strategy", "not both"]),
        ({"strategy": 3}, ["strategy: expected a string, got int"]),
        ({"image": None, "ldm_steps": 20}, ["image: missing"]),  # IOPaint's schema allows null
    ],
)
def test_typos_and_bad_values_are_refused_by_name(client, body: dict, words: list[str]) -> None:
    response = client.post(INPAINT, json={"image": "AAAA", "mask": "AAAA", **body})
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert response.json()["errors"] == message  # the key IOPaint's web app shows
    for word in words:
        assert word in message, message


def test_original_over_http_within_the_stated_limit(client, inpainter) -> None:
    limits = client.get("/api/v1/model").json()
    assert limits["strategies"] == ["auto", "resize", "crop", "original"]
    assert limits["limits"]["max_original_pixels"] == MAX_ORIGINAL
    image, mask = photo(300, 200), brush_mask(300, 200).convert("L")
    files = {"image": ("a.png", png(image), "image/png"), "mask": ("m.png", png(mask), "image/png")}
    response = client.post(INPAINT, files=files, data={"strategy": "original"})
    assert response.status_code == 200, response.text
    assert "x-seed" not in response.headers  # IOPaint's header only for IOPaint's requests
    inpainter.strategy = "original"
    expected = inpainter.inpaint(image, mask)
    inpainter.strategy = "auto"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected)
    big = {"image": ("a.png", png(photo(400, 200)), "image/png"),
           "mask": ("m.png", png(brush_mask(400, 200)), "image/png")}  # fmt: skip
    response = client.post(INPAINT, files=big, data={"strategy": "original"})
    assert response.status_code == 400
    assert "400x200 image runs padded to 512x256 = 131072 pixels" in response.json()["error"]
    body = web_app_body(data_url(photo(400, 200), "PNG"), data_url(brush_mask(400, 200), "PNG"))
    body["hd_strategy"] = "Original"  # IOPaint's Original: the same limit
    assert client.post(INPAINT, json=body).status_code == 400
    body["hd_strategy"] = "Resize"  # its full-resolution pass is shrunk to fit instead
    assert client.post(INPAINT, json=body).status_code == 200


def test_iopaint_fields_in_a_form_and_a_limit_below_one_tile(client, inpainter) -> None:
    image, mask = photo(300, 200), brush_mask(300, 200).convert("L")
    files = {"image": ("a.png", png(image), "image/png"), "mask": ("m.png", png(mask), "image/png")}
    form = {"hd_strategy": "Resize", "hd_strategy_resize_limit": "150"}  # form fields are text
    response = client.post(INPAINT, files=files, data=form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.headers["x-seed"] == "42"
    expected = inpainter.inpaint(image, mask, iopaint=IOPaintStrategy("Resize", resize_limit=150))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected)
    with pytest.raises(InputError, match="--max-original-pixels"):
        create_app(inpainter, Limits(max_original_pixels=100))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_iopaint_table_is_in_docs_serving() -> None:
    text = (Path(__file__).parents[1] / "docs" / "serving.md").read_text()
    for name in IOPAINT_FIELDS:
        assert f"`{name}`" in text, name
