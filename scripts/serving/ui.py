"""The drawing page (Gradio): a canvas or an upload in, each chosen model's answer out.

Layout: the input on the left (a Draw tab with a sketchpad, an Upload tab, a status line),
then one panel per model (A, and B to compare), then a gallery of random test images. Each
model panel shows what the model receives (the preprocessed pixels, enlarged), its top-k
probabilities as bars, the predicted class, and for the convolutional tier the first layer's
feature maps. All the work is done by :mod:`scripts.serving.predict`; this file only wires
components to it, and turns every error into a message on the page.
"""

from pathlib import Path

import numpy as np

from common.errors import UserError
from scripts.serving.models import ServedModel
from scripts.serving.predict import TestImages, answer, predict_dataset_images
from scripts.serving.preprocess import MAX_UPLOAD_BYTES, read_image_file

NONE = "(none)"
GALLERY_SIZE = 12
CSS = """
.pixelated img { image-rendering: pixelated; }
.model-input img { width: 140px !important; height: 140px !important; object-fit: contain; }
#status p { margin: 0; }
"""
#: Runs in the browser when the page opens and when the canvas is cleared (which drops the tool):
#: for two seconds, whenever neither brush nor eraser is selected, select the brush.
SELECT_BRUSH = """
() => {
  const until = Date.now() + 2000;
  const pick = () => {
    const tools = document.querySelectorAll('#sketch button[aria-label="Brush"], #sketch button[aria-label="Erase"]');
    const brush = document.querySelector('#sketch button[aria-label="Brush"]');
    if (brush && ![...tools].some(t => t.classList.contains("highlight"))) { brush.click(); }
    if (Date.now() < until) { setTimeout(pick, 100); }
  };
  pick();
}
"""


def build_app(models: list[ServedModel], *, top_k: int = 3, max_upload_bytes: int = MAX_UPLOAD_BYTES,
              data_dir=None, seed: int = 0):
    """A ``gradio.Blocks`` page serving ``models`` (the first is model A, the second, if any, B)."""
    import gradio as gr

    by_label = {m.label: m for m in models}
    labels = list(by_label)
    tests = TestImages(data_dir)
    rng = np.random.default_rng(seed)
    limit_mb = f"{max_upload_bytes / 2**20:g} MB"

    def model_answer(label, source):
        """(pixels, label dict, prediction text, maps update) for one panel."""
        model = by_label.get(label)
        if model is None or source is None:
            return None, None, "", gr.update(value=None, visible=False)
        result = answer(model, source["image"], top_k, from_dataset=source["from_dataset"])
        pixels = result.pixels[0] if result.pixels.shape[0] == 1 else result.pixels.transpose(1, 2, 0)
        confidences = {name: p for name, p in model.top_k(result.probs, len(model.class_names))}
        text = f"Predicted class: **{result.predicted}** ({result.top[0][1]:.1%})"
        return (pixels, confidences, text,
                gr.update(value=result.maps, visible=result.maps is not None))

    def render(source, label_a, label_b, note=""):
        """Status line and both panels' outputs; a problem with the input is a message, not a crash."""
        empty = (None, None, "", gr.update(value=None, visible=False))
        if source is None:
            return (note or "Draw a digit on the canvas, or upload an image.", *empty, *empty)
        try:
            a = model_answer(label_a, source)
            b = model_answer(label_b, source) if label_b != NONE else empty
        except UserError as exc:
            return (f"⚠️ {exc}", *empty, *empty)
        except Exception as exc:  # the page must keep working: show the problem instead
            return (f"⚠️ could not run the model: {type(exc).__name__}: {exc}", *empty, *empty)
        return (note or source["name"], *a, *b)

    def on_sketch(value, label_a, label_b):
        image = None if value is None else value.get("composite")
        if image is None or np.asarray(image).size == 0 or _is_blank(np.asarray(image)):
            return (None, *render(None, label_a, label_b))
        source = {"image": np.asarray(image), "from_dataset": False, "name": "Your drawing"}
        return (source, *render(source, label_a, label_b))

    def on_upload(path, label_a, label_b):
        if path is None:
            return (None, *render(None, label_a, label_b))
        try:
            image = read_image_file(path, max_upload_bytes)
        except UserError as exc:
            return (None, *render(None, label_a, label_b, note=f"⚠️ {exc}"))
        source = {"image": image, "from_dataset": False, "name": f"Uploaded {Path(path).name}"}
        return (source, *render(source, label_a, label_b))

    def on_browse(label_a, label_b):
        model = by_label[label_a]
        try:
            x, y = tests.sample(model, GALLERY_SIZE, rng)
        except Exception as exc:  # a dataset that cannot be loaded here is a message, not a crash
            return [], [], f"⚠️ no test images for {label_a}: {exc}"
        guesses = {"A": predict_dataset_images(model, x)}
        if label_b in by_label:
            guesses["B"] = predict_dataset_images(by_label[label_b], x)
        items, sources = [], []
        for i, (img, true) in enumerate(zip(x, y)):
            name = model.class_names[true]
            caption = " · ".join([f"true {name}"] + [f"{k}: {v[i]}" for k, v in guesses.items()])
            items.append((img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), caption))
            sources.append({"image": img, "from_dataset": True, "name": f"Test image, true class {name}"})
        return items, sources, f"{len(items)} random test images of {model.dataset}: click one to analyse it"

    def on_pick(shown, label_a, label_b, evt: gr.SelectData):
        source = shown[evt.index] if shown and evt.index is not None else None
        return (source, *render(source, label_a, label_b))

    with gr.Blocks(title="NNOTT: draw a digit", analytics_enabled=False) as app:
        source = gr.State(None)
        gallery_sources = gr.State([])
        gr.Markdown("# Draw a digit, and watch the model answer\n"
                    "The drawing goes through the dataset's own steps (crop, 20/28 box, centre of mass, "
                    "resize, the run's normalisation) before the model sees it.")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tab("Draw"):
                    sketch = gr.Sketchpad(type="numpy", image_mode="RGBA", format="png", canvas_size=(280, 280),
                                          fixed_canvas=True, layers=False, transforms=(),
                                          brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                                          label="Draw a digit (mouse or touch)", elem_id="sketch")
                with gr.Tab("Upload"):
                    upload = gr.File(label=f"Upload an image (PNG, JPEG, ...; at most {limit_mb})",
                                     type="filepath", elem_id="upload")
                status = gr.Markdown("Draw a digit on the canvas, or upload an image.", elem_id="status")
            panels = [_panel(gr, "A", labels, labels[0], top_k),
                      _panel(gr, "B", [NONE, *labels], labels[1] if len(labels) > 1 else NONE, top_k)]
        with gr.Accordion("Random test images", open=True):
            browse = gr.Button("Show random test images", elem_id="browse")
            gallery = gr.Gallery(columns=12, height="auto", format="png", elem_id="gallery",
                                 elem_classes=["pixelated"], allow_preview=False, label="true class · predictions")

        choose_a, choose_b = panels[0][0], panels[1][0]
        outputs = [status, *panels[0][1:], *panels[1][1:]]
        sketch.change(on_sketch, [sketch, choose_a, choose_b], [source, *outputs], trigger_mode="always_last")
        sketch.clear(None, None, None, js=SELECT_BRUSH)
        upload.upload(on_upload, [upload, choose_a, choose_b], [source, *outputs])
        for choose in (choose_a, choose_b):
            choose.change(render, [source, choose_a, choose_b], outputs)
        browse.click(on_browse, [choose_a, choose_b], [gallery, gallery_sources, status])
        gallery.select(on_pick, [gallery_sources, choose_a, choose_b], [source, *outputs])
    app.queue(default_concurrency_limit=1)  # one request at a time: layers keep per-call caches
    return app


def _panel(gr, name: str, choices, value, top_k: int):
    """Dropdown, model input, probabilities, prediction and feature maps of model ``name``."""
    key = name.lower()
    with gr.Column(scale=2):
        choose = gr.Dropdown(choices, value=value, label=f"Model {name}", elem_id=f"model-{key}")
        pixels = gr.Image(label="What the model receives", format="png",
                          interactive=False, height=190, elem_id=f"input-{key}",
                          elem_classes=["pixelated", "model-input"])
        probs = gr.Label(num_top_classes=top_k, label=f"Top-{top_k} probabilities", elem_id=f"probs-{key}")
        predicted = gr.Markdown(elem_id=f"pred-{key}")
        maps = gr.Image(label="First convolution's feature maps", format="png", interactive=False,
                        visible=False, height=300, elem_id=f"maps-{key}", elem_classes=["pixelated", "feature-maps"])
    return choose, pixels, probs, predicted, maps


def _is_blank(image: np.ndarray) -> bool:
    """True for an untouched canvas: every pixel (after flattening on white) the same colour."""
    flat = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
    return bool((flat == flat[0]).all())


def launch(app, port: int, max_upload_bytes: int, quiet: bool = False):
    """Serve ``app`` on 127.0.0.1:``port`` (this machine only) until Ctrl-C."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    app.launch(server_name="127.0.0.1", server_port=port, max_file_size=max_upload_bytes, share=False,
               inbrowser=False, quiet=quiet, ssr_mode=False, footer_links=[], theme=theme, css=CSS, js=SELECT_BRUSH,
               show_error=False)
