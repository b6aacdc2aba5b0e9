"""Shared rules for ``pretrained=``: local files vs hub tags, and the hub errors people see.

A hub error says "offline" only when that is the reason: the hub is switched off (``HF_HUB_OFFLINE``) and
the file is not in the cache. Errors that are not about fetching a file (a construction bug, a damaged
local file) are never dressed up as hub errors: `fetch_failure` tells the two apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import WeightsError

__all__ = ["WEIGHT_SUFFIXES", "is_local_path", "check_local_file", "hub_offline", "offline_error",
           "hub_transfer_errors", "fetch_failure", "fetch_reason", "fetching"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
T = TypeVar("T")


def is_local_path(pretrained: str) -> bool:
    """True when ``pretrained`` names a file (exists, has a weight suffix or a path separator)."""
    return (os.path.exists(pretrained) or pretrained.endswith(WEIGHT_SUFFIXES)
            or os.sep in pretrained or "/" in pretrained)


def check_local_file(pretrained: str, backbone: str) -> str:
    if not Path(pretrained).is_file():
        raise WeightsError(f"{backbone}: pretrained weights file '{pretrained}' does not exist; "
                           f"give an existing {'/'.join(WEIGHT_SUFFIXES)} file.")
    return str(pretrained)


def hub_offline() -> bool:
    """True when the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_transfer_errors() -> tuple[type[BaseException], ...]:
    """What a download raises when the network or the hub says no: huggingface_hub's HTTP errors, its
    HTTP client's (httpx, its httpx2 fork, or requests in older releases), and plain connection errors
    (open_clip's URL tags)."""
    from urllib.error import URLError

    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, ConnectionError, TimeoutError, URLError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def fetch_failure(err: BaseException) -> BaseException | None:
    """The error in ``err``'s chain (itself, then its ``__cause__`` / ``__context__``) that says a file could
    not be fetched from the Hugging Face hub or the network, or None when ``err`` is about something else.

    huggingface_hub raises `LocalEntryNotFoundError` when a file is neither reachable nor cached (offline
    mode or no network), `OfflineModeIsEnabled` for a call the offline mode forbids, and its HTTP errors
    (repository / revision / file not found, gated, 401) when the hub answered no, and the network's errors
    come through as `hub_transfer_errors`.
    """
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    kinds = (LocalEntryNotFoundError, OfflineModeIsEnabled, *hub_transfer_errors())
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def fetch_reason(failure: BaseException) -> str:
    """Why a fetch failed, for a message: offline only when the hub is switched off and the file was not
    cached; no network; or what the hub answered (first line of its message)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    first = next(iter(str(failure).splitlines()), "") or type(failure).__name__
    if isinstance(failure, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and hub_offline():
        return "the hub is offline (HF_HUB_OFFLINE is set) and it is not in the Hugging Face cache"
    if isinstance(failure, HfHubHTTPError):
        return f"the hub could not provide it ({first})"
    return f"the hub could not be reached and it is not in the Hugging Face cache ({first})"


def offline_error(backbone: str, tag: str, example: str, cause: BaseException | None = None) -> WeightsError:
    """The error for a hub name that could not be fetched. ``cause=None``: refused up front because the hub
    is switched off; otherwise the reason `fetch_reason` gives for ``cause``'s fetch failure."""
    failure = fetch_failure(cause) if cause is not None else None
    if cause is None:
        why = "the hub is offline (HF_HUB_OFFLINE is set)"
    elif failure is not None:
        why = fetch_reason(failure)
    else:
        why = f"the download failed ({cause})"
    return WeightsError(f"{backbone}: pretrained='{tag}' is a hub name, but {why}; give a local file with "
                        f"model.pretrained=/path/to/{example}.safetensors")


def fetching(create: Callable[[], T], backbone: str, tag: str, example: str) -> T:
    """``create()`` (a library call that fetches from the hub), whose failure to fetch a file becomes one
    `WeightsError` (`offline_error`, cause kept); any other error, a bug included, propagates unchanged."""
    try:
        return create()
    except Exception as err:  # noqa: BLE001  sorted here: only fetch failures become user errors
        if fetch_failure(err) is None:
            raise
        raise offline_error(backbone, tag, example, err) from err
