import numpy as np
from PIL import Image

from umgkit.vis import colour_for, draw_boxes, overlay_labels, panoptic_colours, save_grid


def test_overlay_colours_labels_and_leaves_ignore_untouched():
    image = np.full((4, 4, 3), 100, np.uint8)
    labels = np.array([[0, 0, 255, 255]] * 4)
    out = overlay_labels(image, labels, alpha=1.0)
    assert (out[:, 2:] == 100).all()
    assert tuple(out[0, 0]) == colour_for(0)


def test_panoptic_void_is_black_and_segments_differ():
    ids = np.array([[0, 5], [7, 7]])
    out = panoptic_colours(ids)
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[0, 1]) != tuple(out[1, 0])
    assert (out[1, 0] == out[1, 1]).all()


def test_draw_boxes_outlines_box_edges_only():
    image = np.zeros((32, 32, 3), np.uint8)
    out = draw_boxes(image, [[4, 4, 20, 20]], colours=[3])
    assert tuple(out[4, 10]) == colour_for(3)  # top edge
    assert tuple(out[12, 12]) == (0, 0, 0)  # inside stays
    assert (image == 0).all()  # input not modified


def test_save_grid_tiles_images(tmp_path):
    tiles = [np.full((8, 10, 3), v, np.uint8) for v in (0, 50, 100, 150, 200)]
    path = save_grid(tiles, tmp_path / "grid.png", columns=2, scale=2)
    picture = np.asarray(Image.open(path))
    assert picture.shape == (3 * 16, 2 * 20, 3)
    assert tuple(picture[16 + 1, 20 + 1]) == (150, 150, 150)  # row 1, column 1 = fourth tile
