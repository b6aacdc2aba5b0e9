"""Pictures worth seeing: mask overlays, boxes with labels, panoptic maps, image grids (PNG)."""

from .draw import colour_for, draw_boxes, overlay_labels, panoptic_colours, save_grid, to_rgb

__all__ = ["colour_for", "draw_boxes", "overlay_labels", "panoptic_colours", "save_grid", "to_rgb"]
