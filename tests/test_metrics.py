"""common.metrics against a 3-class example worked out by hand.

y_true = 0 0 0 0 1 1 2 2 2 2
y_pred = 0 0 1 2 1 1 2 2 0 1

confusion matrix (rows true, cols predicted):   precision = diag / column sum:  2/3, 2/4, 2/3
    [[2, 1, 1],                                 recall    = diag / row sum:     2/4, 2/2, 2/4
     [0, 2, 0],                                 f1 = 2pr/(p+r):                 4/7, 2/3, 4/7
     [1, 1, 2]]                                 support: 4, 2, 4; accuracy 6/10
macro f1 = (4/7 + 2/3 + 4/7) / 3 = 38/63; weighted f1 = 0.4·4/7 + 0.2·2/3 + 0.4·4/7 = 62/105.
"""
import numpy as np
import pytest

from common import metrics as M
from common.errors import UserError

Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 2, 2, 0, 1])
CM = np.array([[2, 1, 1], [0, 2, 0], [1, 1, 2]])


def logits_for(pred, k=3):
    return np.eye(k)[pred] * 5.0 - 1.0


def test_confusion_matrix_by_hand():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)
    np.testing.assert_array_equal(M.confusion_matrix(Y_TRUE, logits_for(Y_PRED), 3), CM)


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(UserError):
        M.confusion_matrix([0, 3], [0, 1], 3)


def test_accuracy_labels_logits_and_soft_targets():
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.6)
    assert M.accuracy(Y_TRUE, logits_for(Y_PRED)) == pytest.approx(0.6)
    soft = 0.7 * np.eye(3)[Y_TRUE] + 0.3 * np.eye(3)[(Y_TRUE + 1) % 3]
    assert M.accuracy(soft, Y_PRED) == pytest.approx(0.6)
    with pytest.raises(UserError):
        M.accuracy(Y_TRUE, Y_PRED[:5])


def test_top_k_accuracy():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0], [1.0, 1.0, 1.0]])
    y = np.array([1, 0, 2, 2])   # ranks of the true class: 1, 2, 2, 0 (tie counts in favour)
    assert M.top_k_accuracy(y, logits, 1) == pytest.approx(0.25)
    assert M.top_k_accuracy(y, logits, 2) == pytest.approx(0.5)
    assert M.top_k_accuracy(y, logits, 3) == pytest.approx(1.0)
    with pytest.raises(UserError):
        M.top_k_accuracy(y, logits, 4)


def test_precision_recall_f1_by_hand():
    p, r, f1, support = M.precision_recall_f1(CM)
    np.testing.assert_allclose(p, [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_allclose(r, [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(f1, [4 / 7, 2 / 3, 4 / 7])
    np.testing.assert_array_equal(support, [4, 2, 4])


def test_zero_division_gives_zero():
    cm = np.array([[3, 0], [2, 0]])   # class 1 never predicted and never right
    p, r, f1, support = M.precision_recall_f1(cm)
    np.testing.assert_allclose(p, [3 / 5, 0])
    np.testing.assert_allclose(r, [1, 0])
    assert f1[1] == 0 and np.isfinite(f1).all()
    np.testing.assert_array_equal(M.precision_recall_f1(np.zeros((2, 2), int))[0], [0, 0])


def test_classification_report_numbers():
    report = M.classification_report(CM, ["cat", "dog", "bird"])
    lines = {line.split()[0]: line.split() for line in report.splitlines() if line.strip()}
    assert lines["dog"][1:] == ["0.5000", "1.0000", "0.6667", "2"]
    assert lines["accuracy"][1:] == ["0.6000", "10"]
    macro = [l for l in report.splitlines() if l.strip().startswith("macro")][0].split()
    weighted = [l for l in report.splitlines() if l.strip().startswith("weighted")][0].split()
    assert float(macro[4]) == pytest.approx(38 / 63, abs=1e-4)
    assert float(weighted[4]) == pytest.approx(62 / 105, abs=1e-4)
    with pytest.raises(UserError):
        M.classification_report(CM, ["only", "two"])


def test_format_confusion_matrix():
    text = M.format_confusion_matrix(CM, ["cat", "dog", "bird"])
    lines = text.splitlines()
    assert lines[0].split()[-3:] == ["cat", "dog", "bird"]
    assert lines[2].split()[-3:] == ["2", "1", "1"]
    assert len({len(l) for l in lines}) == 1   # columns line up
    assert "true 2" in M.format_confusion_matrix(CM)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=40))))
def test_confusion_matrix_agrees_with_counting(case):
    k, pairs = case
    t, p = np.array(pairs).T
    cm = M.confusion_matrix(t, p, k)
    for i in range(k):          # the slow, obvious way, as a reference
        for j in range(k):
            assert cm[i, j] == sum(1 for a, b in pairs if a == i and b == j)
    assert np.trace(cm) / len(pairs) == pytest.approx(M.accuracy(t, p))
