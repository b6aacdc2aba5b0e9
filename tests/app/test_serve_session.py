"""`umgkit serve`'s request logic (no browser): a request gives exactly what `umgkit predict` writes;
bad requests give one message and the session keeps serving; a bare backbone answers zero-shot and a
second vocabulary re-encodes only the text."""

import json

import numpy as np
import pytest
from PIL import Image

from umgkit.app import ServeSession, parse_classes
from umgkit.cli import main
from umgkit.errors import ModelError


def test_parse_classes_trims_and_drops_empty_and_repeated_names():
    assert parse_classes(" circle, square,, circle ,sky ") == ["circle", "square", "sky"]
    assert parse_classes(" , ") == [] and parse_classes(None) == []


def test_a_request_equals_umgkit_predict_on_the_same_image_and_classes(semantic_run, tmp_path):
    run, images, names = semantic_run
    session = ServeSession(str(run), work_dir=tmp_path / "serve")
    assert session.tasks == ["semantic"] and session.default_classes == names
    result = session.run(images[0], ", ".join(names), "semantic")
    assert result.overlay is not None and result.message.startswith("semantic: ")
    assert main(["predict", str(run), str(images[0]), "--out", str(tmp_path / "cli")]) == 0
    cli_overlay = np.asarray(Image.open(tmp_path / "cli" / "overlays" / f"{images[0].stem}.png"))
    assert np.array_equal(np.asarray(Image.open(result.overlay)), cli_overlay)
    areas = json.loads((tmp_path / "cli" / "predictions.json").read_text())["images"][0]["areas"]
    assert {name: share for name, share in result.rows} == pytest.approx(areas, abs=1e-6)
    assert result.columns == ["class", "area"] and sum(s for _, s in result.rows) == pytest.approx(1.0)
    assert result.archive.suffix == ".zip" and result.archive.stat().st_size > 0


def test_bad_requests_give_one_message_and_the_session_keeps_serving(semantic_run, tmp_path):
    run, images, names = semantic_run
    session = ServeSession(str(run), work_dir=tmp_path / "serve")
    classes = ", ".join(names)
    bad = tmp_path / "upload.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cases = {"no image": (None, classes, "semantic"), "no classes": (images[0], " , ", "semantic"),
             "other task": (images[0], classes, "detection"), "unreadable": (bad, classes, "semantic"),
             "fixed head": (images[0], "cat, dog", "semantic")}
    messages = {}
    for what, request in cases.items():
        result = session.run(*request)
        assert result.overlay is None and result.rows == [], what
        messages[what] = result.message
    assert messages["no image"].startswith("No image")
    assert messages["no classes"].startswith("No class names")
    assert "does not do 'detection'; it does semantic" in messages["other task"]
    assert messages["unreadable"].startswith("Cannot read the uploaded image upload.png: ")
    assert "closed-vocabulary classifier over 13 classes" in messages["fixed head"]
    assert session.run(images[1], classes, "semantic").overlay is not None  # still serving


def test_a_bare_backbone_answers_zero_shot_and_new_names_re_encode_only_text(tmp_path, semantic_run):
    _, images, _ = semantic_run
    session = ServeSession("umg:tiny", work_dir=tmp_path / "serve")
    assert session.tasks == ["semantic", "classification"] and session.default_classes == []
    first = session.run(images[0], "circle, sky", "semantic")
    assert first.overlay is not None and {r[0] for r in first.rows} <= {"circle", "sky"}
    predictor = session.predictor("semantic", [])
    backbone = predictor.model.backbone
    texts = []
    encode_text = backbone.encode_text
    backbone.encode_text = lambda t, *a, **k: (texts.append(list(t)), encode_text(t, *a, **k))[1]
    second = session.run(images[0], "square, grass, water", "semantic")
    # the same model (nothing rebuilt or reloaded); the text tower ran on the new names' prompts only
    assert session.predictor("semantic", []) is predictor and predictor.model.backbone is backbone
    assert sorted(n for batch in texts for n in batch) == ["a photo of a grass.", "a photo of a square.",
                                                           "a photo of a water."]
    assert {r[0] for r in second.rows} <= {"square", "grass", "water"}
    classified = session.run(images[0], "circle, sky", "classification")
    assert classified.columns == ["class", "score"]
    assert sum(s for _, s in classified.rows) == pytest.approx(1, 1e-4)


def test_an_image_only_backbone_is_refused_with_what_to_serve_instead():
    with pytest.raises(ModelError, match="image-only backbone"):
        ServeSession("timm:vit_tiny_patch16_224")
