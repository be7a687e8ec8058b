"""The text-rendering definitions, independent of any OCR engine: normalisation, reading order, element matching,
normalised edit distance and the per-image aggregates. (Real OCR on rendered images: test_suites/ocr.)"""

import numpy as np
import pytest

from quantkit.metrics.ocr import Detection, OcrExact, OcrNed, join_text, match_elements, normalise


def box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def test_normalisation_is_nfkc_collapsed_whitespace_and_a_case_policy():
    assert normalise("  ＳＡＬＥ\t 50％\nOFF ") == "sale 50% off"
    assert normalise("Ｃafé  Noël", case="sensitive") == "Café Noël"
    assert normalise("ﬁne") == "fine"  # compatibility ligature
    with pytest.raises(ValueError, match="case"):
        normalise("x", case="upper")


def test_boxes_are_joined_in_reading_order_line_by_line():
    detections = [
        Detection(box(300, 110, 400, 150), "again", 0.9),  # second line, right
        Detection(box(200, 12, 300, 48), "World ", 0.9),  # first line, right, slightly lower than its neighbour
        Detection(box(10, 100, 120, 160), "Hello", 0.9),  # second line, left, taller
        Detection(box(10, 10, 180, 50), "Hello", 0.9),  # first line, left
    ]
    assert join_text(detections, case="sensitive") == "Hello World Hello again"
    assert join_text([]) == ""


def test_an_element_matches_exactly_only_as_whole_words_in_reading_order():
    read = normalise("grand opening today only")
    exact = [m.exact for m in match_elements(read, ["GRAND OPENING", "today", "open", "only today"])]
    assert exact == [True, True, False, False]


def test_ned_is_levenshtein_over_the_longer_length_against_the_closest_run():
    (match,) = match_elements("welcome to quantisation land", ["Quantization"])
    assert match.read == "quantisation" and match.ned == pytest.approx(1 / 12)
    (nothing,) = match_elements("", ["hello"])
    assert nothing.read == "" and nothing.ned == 1.0
    (longer,) = match_elements("hello", ["hello world"])
    assert longer.ned == pytest.approx(6 / 11)


def test_a_target_that_is_empty_after_normalisation_is_an_error():
    with pytest.raises(ValueError, match="empty after normalisation"):
        match_elements("anything", ["  \t"])


class FakeReader:
    """Stands in for the engine so that only the aggregation is under test here (metrics built directly, not
    through the shared ``load`` cache)."""

    def __init__(self, texts):
        self.texts = list(texts)

    def __call__(self, rgb):
        return [Detection(box(0, 0, 10, 10), self.texts.pop(0), 1.0)]


@pytest.fixture
def images():
    return np.zeros((3, 8, 8, 3), dtype=np.uint8)


def test_ocr_exact_is_the_fraction_of_elements_read_and_nan_without_targets(images):
    metric = OcrExact(mode="elements")
    metric.reader = FakeReader(["OPEN 24 HOURS", "Cafe"])
    values = metric.score(images, texts=[["OPEN", "24 HOURS", "CLOSED"], [], ["Café"]])
    assert values[0] == pytest.approx(2 / 3) and np.isnan(values[1]) and values[2] == 0.0


def test_ocr_exact_all_mode_needs_every_element(images):
    metric = OcrExact(mode="all")
    metric.reader = FakeReader(["OPEN 24 HOURS", "OPEN 24 HOURS", "x"])
    values = metric.score(images, texts=[["OPEN", "24 HOURS", "CLOSED"], ["open", "24 hours"], ["y"]])
    assert values.tolist() == [0.0, 1.0, 0.0]


def test_ocr_ned_is_the_mean_element_distance(images):
    metric = OcrNed()
    metric.reader = FakeReader(["SALE", "", "abcd"])
    values = metric.score(images, texts=[["SALE", "SOLD"], ["HI"], ["abce"]])
    assert values.tolist() == pytest.approx([(0 + 2 / 4) / 2, 1.0, 1 / 4])
    assert metric.direction == "lower"


def test_texts_are_required_and_must_be_lists_of_strings(images):
    metric = OcrNed()
    with pytest.raises(ValueError, match="needs texts="):
        metric.score(images)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a list"):
        metric.score(images, texts=[["a"], "b", ["c"]])
    with pytest.raises(ValueError, match="3 images but 2 text lists"):
        metric.score(images, texts=[["a"], ["b"]])
