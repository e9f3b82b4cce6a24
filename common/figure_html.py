"""A matplotlib figure as an ``<img>`` tag, for pages that print HTML (the tutorial's executed blocks).

    print(figure_html(fig, "what the figure shows"))   # in a ```python exec="on" html="on"``` block

The PNG is embedded as a ``data:`` URI, so the page needs no image file and no network.
The figure is closed afterwards.
"""
from __future__ import annotations

import base64
import html
import io


def figure_html(fig, alt: str, dpi: int = 90) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}">'
