"""``manifest_lazy``: a JSONL pretraining manifest read map-style through byte offsets of its lines.

Same items as the ``manifest`` reader, but only 8 bytes per record stay in memory, so manifests that do not
fit in memory as parsed JSON still shuffle through the engine's sampler. At web scale, stream webdataset
shards instead (`umgkit.data.shards`).
"""

from __future__ import annotations

import numpy as np

from ..registry import DATASETS
from ._base import ReaderDataset
from .images import DatasetError, load_image
from .manifest import item_from_record, manifest_file, parse_record

__all__ = ["LazyManifest", "build_manifest_lazy"]


class LazyManifest(ReaderDataset):
    """Map-style JSONL reader holding byte offsets only; ``root`` is the .jsonl or a folder with
    ``<split>.jsonl``. ``class_names`` is empty (scanning the tags would read the whole file)."""

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None):
        super().__init__(root, split, transform, skip_bad, limit)
        path = manifest_file(self.root, split)
        if num_classes is not None:
            raise DatasetError("manifest_lazy has no class list; drop data.num_classes.")
        self.manifest = path
        offsets, pos = [], 0
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    offsets.append(pos)
                pos += len(line)
        self.samples = np.asarray(offsets, dtype=np.int64)
        self._finish(None, f"manifest {path}")

    def load(self, offset: np.int64) -> dict:
        with self.manifest.open("rb") as fh:
            fh.seek(int(offset))
            line = fh.readline().decode("utf-8")
        rec = parse_record(line, f"{self.manifest}@byte{int(offset)}")
        path = self.manifest.parent / rec["image"]
        return item_from_record(rec, load_image(path), str(path))


@DATASETS.register("manifest_lazy")
def build_manifest_lazy(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                        **options) -> LazyManifest:
    """JSONL manifest, map-style over line offsets (large manifests; same items as ``manifest``)."""
    if options:
        raise DatasetError(f"manifest_lazy: unknown data.options {sorted(options)}; it takes none.")
    return LazyManifest(root, split, transform, skip_bad, num_classes, limit)
