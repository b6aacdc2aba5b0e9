"""``umgkit serve``: open-vocabulary inference in the browser (a Gradio page on the `Predictor`).

Gradio is an optional extra (``pip install 'umgkit[app]'``); `ServeSession` (the request logic) does not
need it. The page binds to 127.0.0.1 unless told otherwise.

Example:
    >>> from umgkit.app import serve
    >>> serve("runs/semantic", port=7860)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UmgkitError
from .examples import example_images
from .session import ServeResult, ServeSession, parse_classes

__all__ = ["ServeSession", "ServeResult", "parse_classes", "example_images", "serve"]


def serve(source: str, *, host: str = "127.0.0.1", port: int = 7860, image_size: int | None = None,
          device: str | None = None, examples_dir: str | Path | None = None) -> None:
    """Load ``source`` (run / model folder, ``hf-hub:`` name, or a ``umg:`` / ``openclip:`` / ``hf:``
    backbone for zero-shot queries) and serve its page until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise UmgkitError("umgkit serve needs Gradio, the 'app' extra: pip install 'umgkit[app]'.") from err
    from .page import build_page

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local server
    session = ServeSession(source, image_size=image_size, device=device)
    page = build_page(session, example_images(examples_dir))
    page.launch(server_name=host, server_port=port, show_error=False, allowed_paths=[str(session.work_dir)])
