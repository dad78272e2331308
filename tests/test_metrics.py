import math

import numpy as np
import pytest

from clcc.metrics import hd95, image_metrics, summarise


def _mask(shape, *boxes):
    m = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def test_hand_computed_overlap_metrics():
    target = _mask((10, 10), (0, 4, 0, 5))  # 20 px
    pred = _mask((10, 10), (2, 6, 0, 5))  # 20 px, overlap rows 2-3: 10 px
    m = image_metrics(pred, target)
    assert m["dice"] == pytest.approx(2 * 10 / 40)
    assert m["iou"] == pytest.approx(10 / 30)
    assert m["mae"] == pytest.approx(20 / 100)
    assert m["precision"] == pytest.approx(10 / 20)
    assert m["recall"] == pytest.approx(10 / 20)
    assert m["hd95"] == pytest.approx(2.0)  # every mismatched edge point is 2 rows away


def test_empty_mask_conventions():
    empty, full = np.zeros((8, 6), bool), _mask((8, 6), (1, 3, 1, 3))
    both = image_metrics(empty, empty)
    assert both == {"dice": 1.0, "iou": 1.0, "mae": 0.0, "precision": 1.0, "recall": 1.0,
                    "hd95": 0.0}
    missed = image_metrics(empty, full)
    assert (missed["dice"], missed["precision"], missed["recall"]) == (0.0, 0.0, 0.0)
    assert missed["hd95"] == pytest.approx(math.hypot(8, 6))
    false_alarm = image_metrics(full, empty)
    assert (false_alarm["dice"], false_alarm["precision"], false_alarm["recall"]) == (0, 0, 0)
    assert false_alarm["mae"] == pytest.approx(4 / 48)


def test_hd95_symmetric_percentile():
    a = _mask((20, 20), (5, 8, 5, 8))
    b = _mask((20, 20), (5, 8, 5, 14))
    assert hd95(a, b) == pytest.approx(hd95(b, a))
    assert hd95(a, a) == 0.0


def test_summary_is_mean_and_population_std():
    rows = [{"dice": 0.5, "iou": 0.25}, {"dice": 1.0, "iou": 0.75}]
    s = summarise(rows)
    assert s["dice"] == {"mean": 0.75, "std": 0.25} and "hd95" not in s
