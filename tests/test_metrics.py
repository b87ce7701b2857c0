"""kiln.metrics against hand-computed cases (scikit-learn's definitions).

The running example: y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2], y_pred = [0, 1, 1, 1, 2, 2, 2, 0, 2]
confusion matrix (rows true, cols predicted):
    [[1, 1, 0],
     [0, 2, 1],
     [1, 0, 3]]
per class  tp  fp  fn  support  precision  recall  F1 = 2tp / (2tp + fp + fn)
   0        1   1   1     2       1/2       1/2     2/4
   1        2   1   1     3       2/3       2/3     4/6
   2        3   1   1     4       3/4       3/4     6/8
"""

import math

import numpy as np
import pytest

import kiln
from kiln import metrics as M

T = [0, 0, 1, 1, 1, 2, 2, 2, 2]
P = [0, 1, 1, 1, 2, 2, 2, 0, 2]


def test_confusion_matrix_and_accuracy():
    assert M.confusion_matrix(T, P).tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 3]]
    assert M.accuracy_score(T, P) == pytest.approx(6 / 9)
    assert M.accuracy_score(T, P, normalize=False) == 6
    np.testing.assert_allclose(M.confusion_matrix(T, P, normalize="true")[2], [0.25, 0, 0.75])
    assert M.confusion_matrix(T, P, labels=[2, 0]).tolist() == [[3, 1], [0, 1]]
    # kiln tensors and (N, C) scores: argmax is the prediction
    scores = kiln.tensor(np.eye(3)[P] * 2.0 - 1.0)
    assert M.accuracy_score(kiln.tensor(T), scores) == pytest.approx(6 / 9)


def test_precision_recall_f1_averages():
    p, r, f, s = M.precision_recall_fscore_support(T, P)
    np.testing.assert_allclose(p, [1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_allclose(r, [1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_allclose(f, [1 / 2, 2 / 3, 3 / 4])
    assert s.tolist() == [2, 3, 4]
    macro = (1 / 2 + 2 / 3 + 3 / 4) / 3
    weighted = (2 * 1 / 2 + 3 * 2 / 3 + 4 * 3 / 4) / 9
    assert M.precision_score(T, P, average="macro") == pytest.approx(macro)
    assert M.recall_score(T, P, average="weighted") == pytest.approx(weighted)
    assert M.f1_score(T, P, average="macro") == pytest.approx(macro)
    # micro pools tp / fp / fn: 6 / (6 + 3) for all three
    for fn in (M.precision_score, M.recall_score, M.f1_score):
        assert fn(T, P, average="micro") == pytest.approx(6 / 9)


def test_precision_recall_f1_asymmetric_and_zero_division():
    t, p = [0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 1, 1]
    # class 0: tp 1 fp 0 fn 2 ; class 1: tp 2 fp 3 fn 0 ; class 2: tp 0 fp 0 fn 1
    pr, rc, f1, _ = M.precision_recall_fscore_support(t, p)
    np.testing.assert_allclose(pr, [1.0, 2 / 5, 0.0])  # class 2 never predicted: 0
    np.testing.assert_allclose(rc, [1 / 3, 1.0, 0.0])
    np.testing.assert_allclose(f1, [2 / 4, 4 / 7, 0.0])
    assert M.precision_score(t, p, average="macro", zero_division=1.0) == \
        pytest.approx((1 + 2 / 5 + 1) / 3)
    assert M.f1_score(t, p, average="weighted") == pytest.approx((3 * 0.5 + 2 * 4 / 7) / 6)


def test_binary_average():
    t, p = [1, 0, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0]
    # positive class 1: tp 2, fp 1, fn 1
    assert M.precision_score(t, p) == pytest.approx(2 / 3)
    assert M.recall_score(t, p) == pytest.approx(2 / 3)
    assert M.f1_score(t, p) == pytest.approx(2 / 3)
    assert M.precision_score(t, p, pos_label=0) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="multiclass but average='binary'"):
        M.f1_score(T, P)
    with pytest.raises(ValueError, match="average must be one of"):
        M.f1_score(T, P, average="samples-ish")


def test_roc_auc_binary_with_ties():
    # positives score 0.35, 0.8 ; negatives 0.1, 0.4 -> pairs won: (0.35>0.1), (0.8>both) = 3/4
    assert M.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: pairs 1 + 0.5 + 1 + 1 = 3.5 / 4
    assert M.roc_auc_score([0, 1, 0, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)
    # (N, 2) probabilities: the second column is the positive score
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert M.roc_auc_score([0, 0, 1, 1], probs) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="only one class"):
        M.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])


def test_roc_auc_one_vs_rest():
    t = [0, 1, 2, 0, 1, 2]
    s = np.array([[0.8, 0.1, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3],
                  [0.3, 0.3, 0.4], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    # class 0: positives {0.8, 0.3} vs negatives {0.3, 0.2, 0.1, 0.1}: 4 + (0.5 + 1 + 1 + 1) = 7.5/8
    # class 1: positives {0.4, 0.8} vs {0.1, 0.5, 0.3, 0.2}: 3 + 4 = 7/8
    # class 2: positives {0.3, 0.7} vs {0.1, 0.3, 0.4, 0.1}: (1 + 0.5 + 0 + 1) + 4 = 6.5/8
    per = M.roc_auc_score(t, s, average=None)
    np.testing.assert_allclose(per, [7.5 / 8, 7 / 8, 6.5 / 8])
    assert M.roc_auc_score(t, s) == pytest.approx((7.5 + 7 + 6.5) / 24)
    assert M.roc_auc_score(t[:5], s[:5], average="weighted") == pytest.approx(
        np.average(M.roc_auc_score(t[:5], s[:5], average=None), weights=[2, 2, 1]))
    with pytest.raises(ValueError, match="3 columns but y_true has 2 classes"):
        M.roc_auc_score([0, 1, 0], s[:3])


def test_top_k_accuracy():
    t = [0, 1, 2, 2]
    s = [[0.5, 0.2, 0.2], [0.3, 0.4, 0.2], [0.2, 0.4, 0.3], [0.7, 0.2, 0.1]]
    # top-1: [0, 1, 1, 0] -> hits 2 ; top-2: sample 2 has {1, 2} -> hit ; sample 3 {0, 1} (tie
    # 0.2 vs 0.1 none) -> miss
    assert M.top_k_accuracy_score(t, s, k=1) == pytest.approx(0.5)
    assert M.top_k_accuracy_score(t, s, k=2) == pytest.approx(0.75)
    assert M.top_k_accuracy_score(t, s, k=3) == pytest.approx(1.0)
    assert M.top_k_accuracy_score(t, s, k=2, normalize=False) == 3
    # ties: sample 0 ties classes 1 and 2 at 0.2; scikit-learn's reversed stable sort ranks
    # the later index (2) first, so with k=2 true class 2 is a hit and class 1 is not
    assert M.top_k_accuracy_score([2, 1, 2], [[0.5, 0.2, 0.2]] * 3, k=2,
                                  labels=[0, 1, 2]) == pytest.approx(2 / 3)
    # binary 1-d scores, k=1: probabilities threshold at 0.5
    assert M.top_k_accuracy_score([0, 1, 1], [0.2, 0.7, 0.4], k=1) == pytest.approx(2 / 3)


def test_errors_and_summary():
    with pytest.raises(ValueError, match="different lengths"):
        M.accuracy_score([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        M.accuracy_score([], [])
    text = M.classification_summary(T, P, class_names=["zero", "one", "two"])
    assert "accuracy 0.6667" in text and "zero" in text
    assert text.splitlines()[-1].split()[-3:] == ["1", "0", "3"]
    assert not math.isnan(M.f1_score([0, 0], [0, 0], average="macro"))
