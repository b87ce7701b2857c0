"""Classification metrics with scikit-learn's definitions: ``accuracy_score``,
``precision_score``, ``recall_score``, ``f1_score`` (``average`` = ``'binary'``,
``'micro'``, ``'macro'``, ``'weighted'`` or ``None``), ``precision_recall_fscore_support``,
``confusion_matrix``, ``roc_auc_score`` (binary, and one-vs-rest for multiclass) and
``top_k_accuracy_score``. Inputs are kiln tensors, NumPy arrays or lists.

Definitions (per class ``c``, from the confusion matrix ``C`` with true labels as rows):
``tp = C[c, c]``, ``fp = sum(C[:, c]) - tp``, ``fn = sum(C[c, :]) - tp``;
precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)``, F1 ``2 tp / (2 tp + fp + fn)``
(a ratio with a zero denominator is ``zero_division``, 0 by default). ``micro`` pools the
counts over classes, ``macro`` is the unweighted mean of the per-class values, ``weighted``
weighs them by support (the count of true samples). ROC-AUC is the probability that a
random positive scores above a random negative, ties counting one half -- the
Mann-Whitney statistic, which equals the area under the trapezoidal ROC curve.

Example:
    >>> from kiln import metrics
    >>> y_true, y_pred = [0, 1, 2, 2, 1], [0, 2, 2, 2, 1]
    >>> metrics.accuracy_score(y_true, y_pred)
    0.8
    >>> round(metrics.f1_score(y_true, y_pred, average="macro"), 4)
    0.8222
    >>> metrics.confusion_matrix(y_true, y_pred).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy_score", "precision_score", "recall_score", "f1_score",
           "precision_recall_fscore_support", "confusion_matrix", "roc_auc_score",
           "top_k_accuracy_score", "classification_summary"]


def _arr(x, name: str) -> np.ndarray:
    from kiln.tensor import Tensor

    if isinstance(x, Tensor):
        x = x.detach().numpy()
    a = np.asarray(x)
    if a.size == 0:
        raise ValueError(f"{name}: empty input")
    return a


def _labels_pair(y_true, y_pred, op: str):
    t, p = _arr(y_true, op), _arr(y_pred, op)
    if p.ndim == 2 and t.ndim == 1:
        p = p.argmax(axis=1)  # scores / logits -> predicted class
    t, p = t.reshape(-1) if t.ndim <= 1 else t, p.reshape(-1) if p.ndim <= 1 else p
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"{op}: expected 1-d label arrays (or (N, C) scores for y_pred), "
                         f"got shapes {np.shape(y_true)} and {np.shape(y_pred)}")
    if t.shape != p.shape:
        raise ValueError(f"{op}: y_true and y_pred have different lengths "
                         f"({t.shape[0]} and {p.shape[0]})")
    return t, p


def accuracy_score(y_true, y_pred, normalize: bool = True, sample_weight=None) -> float:
    """Fraction (or count, ``normalize=False``) of exact matches; ``y_pred`` may be
    ``(N, C)`` scores, then its argmax is the prediction."""
    t, p = _labels_pair(y_true, y_pred, "accuracy_score")
    hit = (t == p).astype(np.float64)
    w = np.ones_like(hit) if sample_weight is None else np.asarray(sample_weight, np.float64)
    s = float((hit * w).sum())
    return s / float(w.sum()) if normalize else s


def confusion_matrix(y_true, y_pred, labels=None, normalize: str | None = None) -> np.ndarray:
    """``C[i, j]``: samples of true class ``labels[i]`` predicted as ``labels[j]``;
    ``labels`` defaults to the sorted union of both; ``normalize`` ``'true'`` (rows),
    ``'pred'`` (columns) or ``'all'``."""
    t, p = _labels_pair(y_true, y_pred, "confusion_matrix")
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    index = {v: i for i, v in enumerate(labels.tolist())}
    k = len(labels)
    ti = np.asarray([index.get(v, -1) for v in t.tolist()])
    pi = np.asarray([index.get(v, -1) for v in p.tolist()])
    keep = (ti >= 0) & (pi >= 0)
    cm = np.bincount(ti[keep] * k + pi[keep], minlength=k * k).reshape(k, k)
    if normalize is None:
        return cm
    cmf = cm.astype(np.float64)
    with np.errstate(all="ignore"):
        if normalize == "true":
            cmf = cmf / cmf.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cmf = cmf / cmf.sum(axis=0, keepdims=True)
        elif normalize == "all":
            cmf = cmf / cmf.sum()
        else:
            raise ValueError(f"confusion_matrix: normalize must be 'true', 'pred', 'all' or "
                             f"None, got {normalize!r}")
    return np.nan_to_num(cmf)


def _div(num, den, zero_division):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_fscore_support(y_true, y_pred, *, labels=None, pos_label=1,
                                    average: str | None = None, zero_division=0.0):
    """Precision, recall, F1 and support, per class (``average=None``) or averaged."""
    op = "precision_recall_fscore_support"
    t, p = _labels_pair(y_true, y_pred, op)
    present = np.unique(np.concatenate([t, p]))
    if average == "binary":
        if present.size > 2:
            raise ValueError(f"{op}: target is multiclass but average='binary'; choose "
                             "average from 'micro', 'macro', 'weighted' or None")
        if present.size == 2 and pos_label not in present.tolist():
            raise ValueError(f"{op}: pos_label={pos_label} is not a valid label; it should be "
                             f"one of {present.tolist()}")
        labels = [pos_label]
    elif average not in (None, "micro", "macro", "weighted"):
        raise ValueError(f"{op}: average must be one of None, 'binary', 'micro', 'macro', "
                         f"'weighted', got {average!r}")
    labels = present if labels is None else np.asarray(labels)
    cm = confusion_matrix(t, p, labels=np.concatenate([labels, np.setdiff1d(present, labels)]))
    k = len(labels)
    tp = np.diag(cm)[:k].astype(np.float64)
    pred_pos = cm.sum(axis=0)[:k].astype(np.float64)
    true_pos = cm.sum(axis=1)[:k].astype(np.float64)
    if average == "micro":
        tp, pred_pos, true_pos = tp.sum(), pred_pos.sum(), true_pos.sum()
    precision = _div(tp, pred_pos, zero_division)
    recall = _div(tp, true_pos, zero_division)
    f1 = _div(2 * tp, pred_pos + true_pos, zero_division)
    if average in ("micro", "binary"):
        return (float(np.ravel(precision)[0]), float(np.ravel(recall)[0]),
                float(np.ravel(f1)[0]), None)
    if average is None:
        return precision, recall, f1, true_pos.astype(np.int64)
    weights = true_pos if average == "weighted" else np.ones_like(true_pos)
    if weights.sum() == 0:
        return float(zero_division), float(zero_division), float(zero_division), None
    avg = lambda v: float(np.average(v, weights=weights))
    return avg(precision), avg(recall), avg(f1), None


def precision_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
                    zero_division=0.0):
    """``tp / (tp + fp)``; see the module docstring for ``average``."""
    return precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=pos_label,
                                           average=average, zero_division=zero_division)[0]


def recall_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
                 zero_division=0.0):
    """``tp / (tp + fn)``; see the module docstring for ``average``."""
    return precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=pos_label,
                                           average=average, zero_division=zero_division)[1]


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
             zero_division=0.0):
    """``2 tp / (2 tp + fp + fn)``; see the module docstring for ``average``."""
    return precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=pos_label,
                                           average=average, zero_division=zero_division)[2]


def _rank_auc(pos_mask: np.ndarray, score: np.ndarray) -> float:
    n_pos = int(pos_mask.sum())
    n_neg = pos_mask.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc_score: only one class present in y_true; ROC AUC is not "
                         "defined in that case")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(s.size, np.float64)
    # average 1-based ranks over runs of tied scores
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos_mask].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_score(y_true, y_score, *, average: str | None = "macro", multi_class: str = "ovr",
                  labels=None):
    """Area under the ROC curve. Binary: ``y_score`` is the positive class's score,
    ``(N,)`` (or ``(N, 2)``, its second column is used). Multiclass: ``y_score`` is
    ``(N, C)`` probabilities or scores, one-vs-rest AUC per class averaged ``'macro'``,
    ``'weighted'`` (by prevalence) or returned per class (``average=None``).

    >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    t = _arr(y_true, "roc_auc_score").reshape(-1)
    s = _arr(y_score, "roc_auc_score").astype(np.float64)
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"roc_auc_score: y_true has {t.shape[0]} samples, y_score "
                         f"{s.shape[0]}")
    classes = np.unique(t) if labels is None else np.asarray(labels)
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 2 and classes.size <= 2):
        if classes.size > 2:
            raise ValueError("roc_auc_score: multiclass y_true needs (N, C) scores")
        score = s if s.ndim == 1 else s[:, 1]
        return _rank_auc(t == classes.max(), score)
    if multi_class != "ovr":
        raise ValueError(f"roc_auc_score: only multi_class='ovr' is supported, got "
                         f"{multi_class!r}")
    if s.shape[1] != classes.size:
        raise ValueError(f"roc_auc_score: y_score has {s.shape[1]} columns but y_true has "
                         f"{classes.size} classes")
    aucs = np.asarray([_rank_auc(t == c, s[:, i]) for i, c in enumerate(classes)])
    if average is None:
        return aucs
    if average == "macro":
        return float(aucs.mean())
    if average == "weighted":
        prev = np.asarray([(t == c).sum() for c in classes], np.float64)
        return float(np.average(aucs, weights=prev))
    raise ValueError(f"roc_auc_score: average must be 'macro', 'weighted' or None for "
                     f"one-vs-rest, got {average!r}")


def top_k_accuracy_score(y_true, y_score, *, k: int = 2, normalize: bool = True,
                         labels=None):
    """Fraction of samples whose true class is among the ``k`` highest scores (ties
    broken as scikit-learn does: a stable sort, reversed). Binary 1-d scores with
    ``k=1`` threshold at 0.5 (probabilities) or 0 (decision values).

    >>> top_k_accuracy_score([0, 1, 2, 2], [[.5, .2, .2], [.3, .4, .2], [.2, .4, .3], [.7, .2, .1]])
    0.75
    """
    t = _arr(y_true, "top_k_accuracy_score").reshape(-1)
    s = _arr(y_score, "top_k_accuracy_score").astype(np.float64)
    classes = np.unique(t) if labels is None else np.asarray(labels)
    idx = {v: i for i, v in enumerate(classes.tolist())}
    if any(v not in idx for v in t.tolist()):
        raise ValueError("top_k_accuracy_score: y_true has labels not in labels")
    ti = np.asarray([idx[v] for v in t.tolist()])
    if s.ndim == 1:
        if k == 1:
            thr = 0.5 if s.min() >= 0 and s.max() <= 1 else 0.0
            hits = (s > thr).astype(np.int64) == ti
        else:
            hits = np.ones(t.size, bool)
    else:
        if s.shape[1] != classes.size:
            raise ValueError(f"top_k_accuracy_score: y_score has {s.shape[1]} columns but "
                             f"there are {classes.size} classes (pass labels=)")
        top = np.argsort(s, axis=1, kind="mergesort")[:, ::-1][:, :k]
        hits = (top == ti[:, None]).any(axis=1)
    return float(hits.mean()) if normalize else float(hits.sum())


def classification_summary(y_true, y_pred, class_names=None) -> str:
    """Accuracy, macro/weighted F1 and the confusion matrix as printable text."""
    t, p = _labels_pair(y_true, y_pred, "classification_summary")
    labels = np.unique(np.concatenate([t, p]))
    cm = confusion_matrix(t, p, labels=labels)
    names = [str(class_names[int(v)]) if class_names is not None else str(v)
             for v in labels.tolist()]
    w = max(5, max(len(n) for n in names), len(str(cm.max())) + 1)
    lines = [f"accuracy {accuracy_score(t, p):.4f}   "
             f"macro F1 {f1_score(t, p, average='macro'):.4f}   "
             f"weighted F1 {f1_score(t, p, average='weighted'):.4f}",
             "confusion matrix (rows: true, columns: predicted)",
             " " * (w + 1) + " ".join(n[:w].rjust(w) for n in names)]
    for n, row in zip(names, cm):
        lines.append(n[:w].rjust(w) + " " + " ".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)
