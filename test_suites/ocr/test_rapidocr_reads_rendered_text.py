"""Real PP-OCR (RapidOCR, bundled PP-OCRv6 models, CPU, offline) on text rendered with PIL in DejaVu Sans:
legible text reads back exactly; blurred, missing or different text does not."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from quantkit.metrics import load

# matplotlib (a project dependency) ships DejaVu Sans, so this works on machines without fonts-dejavu.
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def render(lines: list[str], size: int = 384, font_size: int = 36) -> Image.Image:
    image = Image.new("RGB", (size, size), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), font_size)
    for row, line in enumerate(lines):
        draw.text((24, 40 + row * 2 * font_size), line, fill=(20, 20, 30), font=font)
    return image


@pytest.fixture(scope="module")
def sign():
    return render(["GRAND OPENING", "Café Noël", "50% OFF!"])


@pytest.fixture(scope="module")
def exact():
    return load("ocr_exact")


@pytest.fixture(scope="module")
def ned():
    return load("ocr_ned")


SIGN_TEXTS = ["GRAND OPENING", "Café Noël", "50% OFF!"]


def test_legible_text_reads_back_exactly(sign, exact, ned):
    assert exact.score([sign], texts=[SIGN_TEXTS]).tolist() == [1.0]
    assert ned.score([sign], texts=[SIGN_TEXTS]).tolist() == [0.0]


def test_elements_spanning_lines_follow_reading_order(sign, exact):
    (read,) = exact.read([torch.from_numpy(np.array(sign)).permute(2, 0, 1) / 255])
    assert read == "grand opening café noël 50% off!"
    assert exact.score([sign], texts=[["OPENING Café"]]).tolist() == [1.0]
    assert exact.score([sign], texts=[["Noël GRAND"]]).tolist() == [0.0]


def test_heavily_blurred_text_does_not_match(sign, exact, ned):
    blurred = sign.filter(ImageFilter.GaussianBlur(8))
    assert exact.score([blurred], texts=[SIGN_TEXTS]).tolist() == [0.0]
    assert ned.score([blurred], texts=[SIGN_TEXTS])[0] > 0.5


def test_missing_text_does_not_match(exact, ned):
    blank = render([])
    assert exact.score([blank], texts=[["HELLO"]]).tolist() == [0.0]
    assert ned.score([blank], texts=[["HELLO"]]).tolist() == [1.0]


def test_a_misspelling_costs_its_edit_distance(exact, ned):
    typo = render(["Quantisation"])
    assert exact.score([typo], texts=[["Quantization"]]).tolist() == [0.0]
    assert ned.score([typo], texts=[["Quantization"]])[0] == pytest.approx(1 / 12)


def test_only_the_rendered_elements_count(sign, exact):
    assert exact.score([sign], texts=[["GRAND OPENING", "CLOSED"]]).tolist() == [0.5]


def test_case_policy_decides_whether_case_matters():
    hello = render(["Hello World"])
    assert load("ocr_exact", case="fold").score([hello], texts=[["HELLO WORLD"]]).tolist() == [1.0]
    assert load("ocr_exact", case="sensitive").score([hello], texts=[["HELLO WORLD"]]).tolist() == [0.0]
    assert load("ocr_exact", case="sensitive").score([hello], texts=[["Hello World"]]).tolist() == [1.0]


def test_a_batch_scores_each_image_and_repeats_identically(sign, exact):
    batch = np.stack([np.asarray(sign), np.asarray(render(["2026"]))])
    texts = [SIGN_TEXTS, ["2026"]]
    first = exact.score(batch, texts=texts)
    assert first.tolist() == [1.0, 1.0]
    assert np.array_equal(first, exact.score(list(torch.from_numpy(batch).permute(0, 3, 1, 2)), texts=texts))


def test_the_engine_reads_the_same_image_identically_every_time(sign):
    from quantkit.metrics.ocr import _engine, read_text_boxes

    rgb = np.asarray(sign)
    remembered = read_text_boxes("rapidocr", rgb)
    fresh = _engine("rapidocr")(rgb)
    assert [d.text for d in fresh] == [d.text for d in remembered]
    assert all(np.array_equal(a.box, b.box) and a.score == b.score for a, b in zip(fresh, remembered, strict=True))
