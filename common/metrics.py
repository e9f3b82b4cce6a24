"""Classification metrics on host (NumPy) arrays, vectorised: no loop over samples.

Labels are int ``(N,)``; predictions are int ``(N,)`` or logits/probabilities ``(N, K)``
(argmaxed). Soft targets ``(N, K)`` from CutMix/MixUp count as their largest class.
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError


def _as_labels(a, name: str) -> np.ndarray:
    """int (N,) labels, or (N, K) scores/soft targets -> their argmax (N,)."""
    a = np.asarray(a)
    if a.ndim == 2:
        return a.argmax(axis=1)
    if a.ndim != 1:
        raise UserError(f"{name} must be labels (N,) or scores (N, K), got shape {a.shape}")
    return a.astype(np.int64, copy=False)


def _check_lengths(y_true, y_pred):
    if len(y_true) != len(y_pred):
        raise UserError(f"y_true has {len(y_true)} samples but the predictions have {len(y_pred)}")
    if len(y_true) == 0:
        raise UserError("metrics need at least one sample; the evaluated set is empty")


def accuracy(y_true, y_pred_or_logits) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred_or_logits, "y_pred")
    _check_lengths(t, p)
    return float(np.mean(t == p))


def top_k_accuracy(y_true, logits, k: int) -> float:
    """Fraction of samples whose true class is among the k highest scores. logits: (N, K).

    The rank of the true class is the number of classes scoring strictly higher, so ties are
    resolved in the sample's favour.
    """
    logits = np.asarray(logits)
    t = _as_labels(y_true, "y_true")
    if logits.ndim != 2:
        raise UserError(f"top-k accuracy needs scores (N, K), got shape {logits.shape}")
    _check_lengths(t, logits)
    if not 1 <= k <= logits.shape[1]:
        raise UserError(f"top-k accuracy needs 1 <= k <= {logits.shape[1]} (number of classes), got k={k}")
    true_score = logits[np.arange(len(t)), t]
    rank = (logits > true_score[:, None]).sum(axis=1)
    return float(np.mean(rank < k))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """int64 (K, K) counts; row = true class, column = predicted class.

    Each (true, pred) pair is one cell index true*K + pred, counted with np.bincount.
    """
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    _check_lengths(t, p)
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.min() < 0 or a.max() >= num_classes:
            raise UserError(f"{name} has labels outside 0..{num_classes - 1}; check num_classes ({num_classes})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(num, den):
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision_recall_f1(cm) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (precision, recall, f1, support), each (K,); 0 where a denominator is 0.

    precision_k = cm[k,k] / column sum (predicted k), recall_k = cm[k,k] / row sum (truly k),
    f1 = 2 p r / (p + r), support = row sum.
    """
    cm = np.asarray(cm)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    precision = _safe_divide(tp, cm.sum(axis=0))
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return precision, recall, f1, support.astype(np.int64)


def _names(class_names, k):
    if class_names is None:
        return [str(i) for i in range(k)]
    if len(class_names) != k:
        raise UserError(f"{len(class_names)} class names given for {k} classes")
    return [str(n) for n in class_names]


def classification_report(cm, class_names=None) -> str:
    """Text table: per-class precision, recall, F1, support; then accuracy, macro and weighted avg."""
    cm = np.asarray(cm)
    precision, recall, f1, support = precision_recall_f1(cm)
    names = _names(class_names, len(cm))
    total = support.sum()
    width = max(12, *(len(n) for n in names))
    lines = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    for row in zip(names, precision, recall, f1, support):
        lines.append(f"{row[0]:>{width}} {row[1]:9.4f} {row[2]:9.4f} {row[3]:9.4f} {row[4]:9d}")
    weights = _safe_divide(support, total)
    lines += ["",
              f"{'accuracy':>{width}} {'':9} {'':9} {_safe_divide(np.trace(cm), total):9.4f} {total:9d}",
              f"{'macro avg':>{width}} {precision.mean():9.4f} {recall.mean():9.4f} {f1.mean():9.4f} {total:9d}",
              f"{'weighted avg':>{width}} {weights @ precision:9.4f} {weights @ recall:9.4f} "
              f"{weights @ f1:9.4f} {total:9d}"]
    return "\n".join(lines)


def format_confusion_matrix(cm, class_names=None) -> str:
    """Text table of counts: rows 'true <name>', columns the predicted names."""
    cm = np.asarray(cm)
    names = _names(class_names, len(cm))
    cell = max(5, max(len(n) for n in names), len(str(cm.max(initial=0)))) + 1
    corner = "true \\ pred"
    label = max(len(corner), *(len("true " + n) for n in names))
    header = f"{corner:>{label}} |" + "".join(f"{n:>{cell}}" for n in names)
    rows = [f"{'true ' + n:>{label}} |" + "".join(f"{v:>{cell}d}" for v in r) for n, r in zip(names, cm)]
    return "\n".join([header, "-" * len(header)] + rows)


def r2_score(y_true, y_pred) -> float:
    """Coefficient of determination R^2 = 1 - SS_res / SS_tot for a regression.

    SS_res = sum (y - y_hat)^2, SS_tot = sum (y - mean y)^2: 1 for a perfect fit, 0 for always
    predicting the mean, negative for worse than that.  y_true, y_pred: ``(N,)`` (or ``(N, 1)``).
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_hat = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    _check_lengths(y, y_hat)
    if len(y) < 2:
        raise UserError(f"R^2 needs at least 2 targets, got {len(y)}")
    ss_tot = float(np.square(y - y.mean()).sum())
    ss_res = float(np.square(y - y_hat).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
