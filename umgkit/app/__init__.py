"""``umgkit serve``: open-vocabulary inference in the browser (a Gradio page on the `Predictor`).

Gradio is an optional extra (``pip install 'umgkit[app]'``); `ServeSession` (the request logic) does not
need it. The page binds to 127.0.0.1 unless told otherwise.

Example:
    >>> from umgkit.app import serve
    >>> serve("runs/semantic", port=7860)  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from ..errors import ConfigError, UmgkitError
from .examples import example_images
from .session import ServeResult, ServeSession, parse_classes

__all__ = ["ServeSession", "ServeResult", "parse_classes", "example_images", "serve", "check_address"]


def serve(source: str, *, host: str = "127.0.0.1", port: int = 7860, image_size: int | None = None,
          device: str | None = None, examples_dir: str | Path | None = None) -> None:
    """Load ``source`` (run / model folder, ``hf-hub:`` name, or a ``umg:`` / ``openclip:`` / ``hf:``
    backbone for zero-shot queries) and serve its page until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise UmgkitError("umgkit serve needs Gradio, the 'app' extra: pip install 'umgkit[app]'.") from err
    from .page import build_page

    check_address(host, port)  # before the model loads
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local server
    session = ServeSession(source, image_size=image_size, device=device)
    page = build_page(session, example_images(examples_dir))
    try:
        page.launch(server_name=host, server_port=port, show_error=False,
                    allowed_paths=[str(session.work_dir)])
    except (OSError, OverflowError) as err:  # taken since the check, or refused by Gradio itself
        raise ConfigError(f"cannot serve on {host}:{port} ({err}); choose another --port or --host.") from err


def check_address(host: str, port: int) -> None:
    """Refuse a port outside 0-65535, a host this machine cannot bind, or a port already in use, by
    binding a socket once (Gradio's own errors are tracebacks, raised after the model has loaded)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port number; give one in 0-65535 (default 7860).")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({err}); give 127.0.0.1 "
                          "(this machine only) or 0.0.0.0 (every interface).") from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket does
        try:
            probe.bind(address)
        except OSError as err:
            what = (f"port {port} is already in use on {host}" if err.errno == errno.EADDRINUSE
                    else f"{host}:{port} cannot be bound ({err.strerror or err})")
            raise ConfigError(f"{what}; choose another --port (or stop the server using it), or another "
                              "--host.") from err
