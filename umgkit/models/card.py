"""The model card (``README.md``) of a model folder, with the Hugging Face model-card YAML header."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .._io import atomic_write_text

__all__ = ["write_model_card", "model_card"]


def model_card(folder: str | Path) -> str:
    """Markdown for the model folder ``folder`` (read from its model.json, config.yaml, class_names.json)."""
    folder = Path(folder)
    info = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    names_file = folder / "class_names.json"
    names = json.loads(names_file.read_text(encoding="utf-8")) if names_file.is_file() else []
    task, backbone, adapter = info["task"], info["backbone"], info.get("adapter") or {}
    metrics = {k: v for k, v in (info.get("metrics") or {}).items() if isinstance(v, (int, float))}
    headline = {k: v for k, v in metrics.items() if "." not in k}  # per-class keys look like IoU.<name>
    header = {"library_name": "umgkit",
              "tags": ["umgkit", task, f"adapter:{adapter.get('method', 'none')}",
                       "parameter-efficient-tuning"],
              "pipeline_tag": info.get("pipeline_tag") or "image-feature-extraction",
              "metrics": sorted(headline)}
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
             f"# umgkit {task} model", "",
             f"A frozen `{backbone['name']}` backbone adapted with `{adapter.get('method', 'none')}` and a "
             f"`{info.get('head') or 'default'}` head ({info.get('classifier', 'learned')} classifier), "
             "trained with umgkit. This folder holds only the trainable weights; the frozen backbone is "
             "referenced below and rebuilt when the model loads.", "",
             "## Backbone", "",
             f"- name: `{backbone['name']}`",
             f"- pretrained: `{backbone.get('pretrained')}`",
             f"- weights file: `{backbone.get('file')}`" if backbone.get("file") else
             "- weights file: none (seeded initialisation or the library's own weights)",
             f"- sha256{' of the file' if backbone.get('file') else ' of the frozen weights'}: "
             f"`{backbone.get('sha256')}`", "",
             "## Adapter and head", "",
             f"- adapter: `{adapter.get('method')}` with options `{json.dumps(adapter.get('options', {}))}`",
             f"- trainable parameters: {info['trainable_parameters']:,} of {info['total_parameters']:,} "
             f"({100.0 * info['trainable_parameters'] / max(1, info['total_parameters']):.3f} %)",
             f"- input: {cfg['data']['image_size']} px (see preprocess.json)"]
    if names:
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        lines.append(f"- classes: {shown}")
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(headline.items())]
        per_class = sorted(set(metrics) - set(headline))
        if per_class:
            lines += ["", "<details><summary>per class</summary>", "", "| metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {metrics[k]:.4f} |" for k in per_class]
            lines += ["", "</details>"]
        lines += ["", f"On the val split of `{cfg['data'].get('root')}` at the end of training."]
    else:
        lines.append("No evaluation was run (no val split).")
    lines += ["", "## Use it", "", "```bash",
              f"umgkit eval {folder}                         # metrics on the config's val split",
              f"umgkit predict {folder} IMAGES... --out preds  # predictions + overlays", "```", "",
              "```python", "from umgkit import Predictor", "",
              f'predictor = Predictor.from_pretrained("{folder}")',
              'results = predictor(["image.jpg"])', 'results[0].save("preds/")', "```", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path) -> Path:
    return atomic_write_text(Path(folder) / "README.md", model_card(folder))

