"""The Gradio page of `umgkit serve`: an image, class names and a task in; overlay, table and files out.

Everything it shows comes from `ServeSession.run` (so from the `Predictor`); the page only lays it out.
Element ids (``umg-*``) are stable so that browser tests and users' scripts can find the fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .session import ServeSession

__all__ = ["build_page"]

_INTRO = """# umgkit: {source}
Upload an image or pick an example, type class names separated by commas, choose a task, press
**Predict**. The overlay, the table and the downloadable files are what `umgkit predict` writes for the
same image and classes."""


def build_page(session: ServeSession, examples: list[Path]) -> Any:
    """A ``gradio.Blocks`` page for ``session`` (call ``.launch()`` on it)."""
    import gradio as gr

    def respond(image: str | None, classes: str, task: str) -> tuple:
        result = session.run(image, classes, task)
        if result.overlay is None:
            return (f"**{result.message}**", None, gr.update(value=None), None)
        table = {"headers": result.columns, "data": result.rows}
        return (result.message, str(result.overlay), table, str(result.archive))

    shown = session.source if session.bare_backbone else Path(session.source).name or session.source
    with gr.Blocks(title=f"umgkit · {shown}", analytics_enabled=False) as page:
        gr.Markdown(_INTRO.format(source=shown))
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="image", type="filepath", format="png", image_mode="RGB",
                                 sources=["upload"], elem_id="umg-image")
                classes = gr.Textbox(label="class names (comma separated)", elem_id="umg-classes",
                                     value=", ".join(session.default_classes))
                task = gr.Dropdown(session.tasks, value=session.tasks[0], label="task", elem_id="umg-task")
                run = gr.Button("Predict", variant="primary", elem_id="umg-run")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="examples")
            with gr.Column():
                message = gr.Markdown(elem_id="umg-message")
                overlay = gr.Image(label="overlay", type="filepath", format="png", interactive=False,
                                   elem_id="umg-overlay")
                table = gr.Dataframe(label="numbers", interactive=False, elem_id="umg-table")
                files = gr.File(label="files (umgkit predict format, zip)", elem_id="umg-files")
        run.click(respond, inputs=[image, classes, task], outputs=[message, overlay, table, files])
    return page
