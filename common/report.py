"""One run as a self-contained HTML page: settings, curves, confusion matrix, per-class scores and
the worst-classified test images. Figures are PNGs embedded as base64, so the file can be mailed
or opened offline; nothing is fetched from the network.
"""
from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from common import metrics, plots
from common.tracking import Run, format_value

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { padding: 0.2rem 0.6rem; border: 1px solid #ddd; }
th { background: #f3f3f7; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } .note { color: #666; } .cols { columns: 2; }
"""


def _png(make) -> str:
    """Call ``make(path)`` (a plotting function writing a PNG) and return an <img> with the bytes inlined."""
    with tempfile.TemporaryDirectory() as tmp:
        path = make(Path(tmp) / "figure.png")
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _table(header, rows, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f'<td{" class=n" if i >= numeric_from else ""}>{html.escape(format_value(v))}</td>'
                 for i, v in enumerate(row)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def per_class_rows(cm, class_names) -> list[list]:
    """[name, precision, recall, F1, support] for each class, then the macro average."""
    precision, recall, f1, support = metrics.precision_recall_f1(cm)
    rows = [[str(n), p, r, f, int(s)] for n, p, r, f, s in zip(class_names, precision, recall, f1, support)]
    rows.append(["macro average", precision.mean(), recall.mean(), f1.mean(), int(support.sum())])
    return rows


def build_report(run: Run) -> str:
    """The HTML text of ``run``'s report."""
    parts = [f"<h1>Run {html.escape(run.name)}</h1>",
             f"<p>{html.escape(run.tier)} tier, model <b>{html.escape(run.model)}</b>, dataset "
             f"<b>{html.escape(run.dataset)}</b>, {run.epochs_done} epochs; test accuracy "
             f"<b>{format_value(run.test_acc * 100)}%</b>, test loss {format_value(run.test_loss)}.</p>",
             "<h2>Settings</h2>",
             _table(["flag", "value"], sorted(run.settings.items())) if run.settings
             else '<p class="note">no config.yaml in this run folder</p>']
    parts.append("<h2>Training curves</h2>")
    history = {k: v for k, v in run.history.items() if k in ("loss", "val_loss", "acc", "val_acc", "lr")}
    if run.epochs_done:
        parts.append(_png(lambda p: plots.plot_history(history, p)))
        keys = [k for k in ("loss", "acc", "val_loss", "val_acc", "lr") if k in run.metrics]
        rows = [[int(e), *(run.metrics[k][i] for k in keys)] for i, e in enumerate(run.metrics["epoch"])]
        parts.append(_table(["epoch", *keys], rows, numeric_from=0))
    else:
        parts.append('<p class="note">no epoch finished yet</p>')
    parts += _prediction_sections(run)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>NNOTT run {html.escape(run.name)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _prediction_sections(run: Run) -> list[str]:
    if not (run.path / "predictions.npz").exists():
        return ['<h2>Test predictions</h2><p class="note">this run saved no predictions.npz (it did not reach '
                'its test evaluation), so there is no confusion matrix or error analysis</p>']
    p = run.predictions()
    names = [str(c) for c in p["class_names"]]
    y_true, probs = p["y_true"], p["probs"]
    y_pred = probs.argmax(axis=1)
    cm = metrics.confusion_matrix(y_true, y_pred, len(names))
    out = [f"<h2>Confusion matrix</h2><p>{len(y_true)} test images; row = true class, column = predicted.</p>",
           _png(lambda path: plots.plot_confusion_matrix(cm, path, names)),
           "<h2>Per-class precision, recall and F1</h2>",
           "<p>precision = correct predictions of a class / all predictions of it; recall = correct / all "
           "images truly of it; F1 = 2PR / (P + R).</p>",
           _table(["class", "precision", "recall", "F1", "support"], per_class_rows(cm, names))]
    worst, images = p["worst_index"], p["worst_images"]
    out.append("<h2>Worst-classified test images</h2>")
    if len(worst) == 0:
        out.append('<p class="note">every test image was classified correctly</p>')
        return out
    out.append(f"<p>The {len(worst)} misclassified images whose true class got the lowest probability "
               "(test index, true class, prediction, probability of the true class).</p>")
    out.append(_png(lambda path: plots.plot_misclassified(images, y_true[worst], y_pred[worst], path, names,
                                                           max_images=len(worst))))
    rows = [[int(i), names[y_true[i]], names[y_pred[i]], float(probs[i, y_true[i]]), float(probs[i, y_pred[i]])]
            for i in worst]
    out.append(_table(["test index", "true", "predicted", "p(true)", "p(predicted)"], rows, numeric_from=3))
    return out


def write_report(run_path, out=None) -> Path:
    """Write ``<run>/report.html`` (or ``out``) and return its path."""
    run = Run.load(run_path)
    out = Path(out) if out is not None else run.path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(run), encoding="utf-8")
    return out
