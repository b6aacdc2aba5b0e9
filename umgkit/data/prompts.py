"""The CoOp protocol's hand-made prompt per dataset (the zero-shot CLIP baseline of the few-shot papers).

One ``"...{}..."`` template per dataset of the protocol; ``{}`` is the class name. Heads take them as
``head_options.templates: "dataset:<name>"`` (`umgkit.heads.classification.resolve_templates`).

Example:
    >>> dataset_template("oxford_pets").format("beagle")
    'a photo of a beagle, a type of pet.'
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["DATASET_TEMPLATES", "dataset_template"]

DATASET_TEMPLATES = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "flowers102": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
}


def dataset_template(name: str) -> str:
    """The prompt of dataset ``name`` (a key of `DATASET_TEMPLATES`); a `ConfigError` lists the names."""
    if name not in DATASET_TEMPLATES:
        raise ConfigError(f"no prompt template for dataset {name!r}; known datasets: "
                          f"{', '.join(sorted(DATASET_TEMPLATES))} (templates: 'dataset:<name>'), or give "
                          "the prompt itself, e.g. 'a photo of a {}.'.", key="model.head_options.templates")
    return DATASET_TEMPLATES[name]
