"""Serving trained checkpoints: the library behind ``scripts/serve.py``'s drawing page.

- :mod:`~scripts.serving.preprocess`: a drawing or a picture -> the pixels the model was trained on;
- :mod:`~scripts.serving.models`: a checkpoint of any tier -> a model that gives probabilities;
- :mod:`~scripts.serving.predict`: one input's answer (top-k, feature maps) and test images;
- :mod:`~scripts.serving.ui`: the Gradio page that wires them to a canvas and an upload.

Only ``ui`` imports Gradio; the rest is NumPy and Pillow, and is tested without a browser.
"""
