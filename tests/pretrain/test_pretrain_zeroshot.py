"""Zero-shot evaluators on hand-checkable cases: a stub whose embeddings are built to be perfect."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umgkit.pretrain import chance_miou, zeroshot_classification, zeroshot_regions, zeroshot_segmentation

NAMES = ["red", "green", "blue"]


class ColourStub(nn.Module):
    """Embeds a class name / an image area as the one-hot of its colour channel: perfect by construction."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_text(self, texts):
        return F.one_hot(torch.tensor([NAMES.index(t.split()[-1]) for t in texts]), 3).float()

    def encode_image(self, images):
        return F.one_hot(images.mean(dim=(2, 3)).argmax(dim=1), 3).float()

    def embed_pixels(self, images):
        return F.one_hot(images.argmax(dim=1), 3).permute(0, 3, 1, 2).float()

    def embed_regions(self, images, boxes):
        out = []
        for img, bx in zip(images, boxes, strict=True):
            for x1, y1, x2, y2 in bx.long().tolist():
                out.append(self.encode_image(img[None, :, y1:y2, x1:x2])[0])
        return torch.stack(out)


class ListData(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items, self.class_names = items, NAMES

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _image(c, size=8):
    img = torch.zeros(3, size, size)
    img[c] = 1.0
    return img


def test_perfect_stub_scores_one_and_wrong_labels_score_zero():
    stub = ColourStub()
    cls = ListData([{"image": _image(i % 3), "label": i % 3} for i in range(6)])
    assert zeroshot_classification(stub, cls, templates=["a {}"], batch_size=4) == \
        {"top1": 1.0, "chance": pytest.approx(1 / 3), "images": 6.0}
    wrong = ListData([{"image": _image(i % 3), "label": (i + 1) % 3} for i in range(6)])
    assert zeroshot_classification(stub, wrong, templates=["a {}"])["top1"] == 0.0

    img = torch.zeros(3, 8, 8)
    img[0, :, :4] = 1.0  # left half red, right half blue
    img[2, :, 4:] = 1.0
    boxes = torch.tensor([[0.0, 0.0, 4.0, 8.0], [4.0, 0.0, 8.0, 8.0]])
    reg = ListData([{"image": img, "boxes": boxes, "labels": torch.tensor([0, 2])}])
    assert zeroshot_regions(stub, reg, templates=["{}"])["top1"] == 1.0
    label = torch.zeros(8, 8, dtype=torch.long)
    label[:, 4:] = 2
    label[0, 0] = 255  # ignored
    seg = ListData([{"image": img, "label_map": label}])
    out = zeroshot_segmentation(stub, seg, templates=["{}"])
    assert out["mIoU"] == 1.0 and out["aAcc"] == 1.0


def test_chance_miou_by_hand():
    # 2 classes, 30 and 10 ground-truth pixels: uniform guessing gives IoU_c = n_c / (C n_c + N - n_c)
    matrix = torch.tensor([[30, 0], [0, 10]])
    expected = (30 / (60 + 10) + 10 / (20 + 30)) / 2
    assert chance_miou(matrix) == pytest.approx(expected)
    assert chance_miou(torch.tensor([[5, 0], [0, 5]])) == pytest.approx(1 / 3)  # balanced: 1 / (C + 1)


def test_templates_per_granularity_reach_their_evaluator():
    from umgkit.config import ConfigError
    from umgkit.pretrain.task import zeroshot_templates

    one = zeroshot_templates(["a {}"])
    assert one == {"classification": ["a {}"], "regions": ["a {}"], "segmentation": ["a {}"]}
    split = zeroshot_templates({"classification": ["the largest is a {}", "a big {}"]})
    assert split["classification"] == ["the largest is a {}", "a big {}"]
    assert split["regions"] == split["segmentation"] == ["a photo of a {}."]  # the option's default
    for bad, needle in (({"image": ["a {}"]}, "unknown keys ['image']"), (["a cat"], "containing '{}'"),
                        ({"regions": []}, "(regions)")):
        with pytest.raises(ConfigError) as err:
            zeroshot_templates(bad)
        assert needle in str(err.value)


def test_evaluate_zeroshot_uses_each_granularity_s_own_prompts(monkeypatch):
    from umgkit.pretrain import run

    seen = []

    class Recording(ColourStub):
        image_mean, image_std = (0.0,) * 3, (1.0,) * 3

        def encode_text(self, texts):
            seen.append(list(texts))
            return super().encode_text(texts)

    class Readers:  # stands in for the DATASETS registry: every format reads the same three images
        @staticmethod
        def build(name, **kwargs):
            return ListData([{"image": _image(i), "label": i, "boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]),
                              "labels": torch.tensor([i])} for i in range(3)])

    monkeypatch.setattr(run, "DATASETS", Readers)
    spec = {"format": "any", "root": "unused"}
    out = run.evaluate_zeroshot(Recording(), {"classification": spec, "regions": spec}, image_size=8,
                            templates={"classification": ["a big {}"], "regions": ["{}"]})
    assert out["classification"]["top1"] == out["regions"]["top1"] == 1.0
    assert seen == [["a big red", "a big green", "a big blue"], ["red", "green", "blue"]]
