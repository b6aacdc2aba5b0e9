"""Pictures worth seeing: mask overlays, boxes with labels, panoptic maps, image grids (PNG)."""

from .draw import add_legend, colour_for, draw_boxes, overlay_labels, panoptic_colours, save_grid, to_rgb

__all__ = ["add_legend", "colour_for", "draw_boxes", "overlay_labels", "panoptic_colours", "save_grid",
           "to_rgb"]
