"""The page in a photo of it (`python -m src.denoise --crop`): its outline found, the page cut out of the
photo and squared up.

A phone's photo of a page shows the desk around it, and the page as a quadrilateral, not a rectangle. The
page is the largest shape in the photo brighter than the desk, which the photo shows along its edges:
the photo, shrunk, is split there, the text closed over, the outline of the largest bright shape
simplified to four corners, and the corners set where lines fitted to its four sides meet. Where that
fails (no shape of four corners, or one that spans too little of the photo, or all of it) the photo is
left as it is: a scan, whose paper fills the frame, is such a case.
"""
from __future__ import annotations

import cv2
import numpy as np

# The outline is found on the photo shrunk to this longer side (px): the page's edges are tens of pixels
# long there, and a photo of 12 megapixels is searched in milliseconds.
SEARCH_SIDE = 800
# A page's outline must span at least this share of the photo's width and height (a smaller bright shape is
# a label or a window), and its area must stay under FULL of the photo's (one that fills the photo is the
# photo's own edge: a scan, left as it is).
MIN_SPAN, FULL = 0.3, 0.97
# How far the outline may stray from its four-cornered simplification, as a share of its perimeter.
CORNER_FIT = 0.02
# The desk's brightness: this percentile of the band along the photo's edges (BAND of its shorter side),
# and the page brighter than that by LIFT (of 255).
BAND, DESK, LIFT = 0.03, 99, 6
# The split above the desk's brightest lies on the desk's side of the page's blurred edge, so the outline
# runs a pixel or two outside the page, and a sliver of desk along a cut-out page's edges would be cleaned
# into a dark rule: the corners are drawn in towards the page's centre by this share, a page's blank
# margin losing half a percent of its width and height on each side.
INSET = 0.01


def page_outline(photo: np.ndarray) -> np.ndarray | None:
    """The page's four corners in `photo` ((H, W) float in [0, 1]): float32 (4, 2) x, y, in the order top
    left, top right, bottom right, bottom left; None where no page's outline is found."""
    h, w = photo.shape
    shrink = min(1.0, SEARCH_SIDE / max(h, w))
    small = cv2.resize(np.asarray(photo, np.float32), (max(1, round(w * shrink)), max(1, round(h * shrink))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8), (5, 5), 0)
    # The desk is what the photo shows along its edges, the page lying whole inside them: the page is what
    # is brighter than nearly all of that (stains and text inside it are closed over below, a dark band
    # along its edge is not).
    band = max(2, round(BAND * min(small.shape)))
    edges = np.concatenate([small[:band].ravel(), small[-band:].ravel(), small[:, :band].ravel(),
                            small[:, -band:].ravel()])
    bright = ((small > np.percentile(edges, DESK) + LIFT) * 255).astype(np.uint8)
    side = max(3, round(max(small.shape) / 50) | 1)   # wider than a line of text's gaps, there
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((side, side), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    page = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(page)
    corners = cv2.approxPolyDP(hull, CORNER_FIT * cv2.arcLength(hull, True), True).reshape(-1, 2)
    sh, sw = small.shape
    if len(corners) != 4 or cv2.contourArea(corners) > FULL * sh * sw:
        return None
    span = corners.max(axis=0) - corners.min(axis=0)
    if span[0] < MIN_SPAN * sw or span[1] < MIN_SPAN * sh:
        return None
    corners = _fitted(corners.astype(np.float32), page.reshape(-1, 2).astype(np.float32)) / shrink
    centre = corners.mean(axis=0)
    corners = centre + (corners - centre) * (1 - INSET)
    # clockwise on the screen (y runs down) from the top left, the corner with the smallest x + y: by angle
    # about the centre, which orders a page turned by any angle, where x + y and y - x alone may name one
    # corner twice
    around = corners[np.argsort(np.arctan2(*(corners - centre).T[::-1]))]
    return np.roll(around, -int(around.sum(axis=1).argmin()), axis=0)


def _fitted(corners: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """The corners where lines fitted to the outline's four sides meet: a side is long and straight, where
    a corner may be rounded, dog-eared or hidden in a stain as dark as the desk, which moves the simplified
    outline's vertex inwards. A side's line follows the outline's points along its middle 80 %."""
    lines = []
    for a, b in zip(corners, np.roll(corners, -1, axis=0)):
        along = b - a
        length = float(np.linalg.norm(along))
        rel = outline - a
        t = rel @ along / length ** 2   # where along the side, 0 to 1
        off = np.abs(along[0] * rel[:, 1] - along[1] * rel[:, 0]) / length   # distance from the side
        points = outline[(t > 0.1) & (t < 0.9) & (off < 0.02 * length + 2)]
        if len(points) < 2:   # too few to fit: the simplified side as it is
            points = np.stack([a + 0.1 * along, a + 0.9 * along])
        vx, vy, x0, y0 = cv2.fitLine(points, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0]), np.array([vx, vy])))
    fitted = corners.copy()
    for k in range(4):
        (p1, d1), (p2, d2) = lines[k - 1], lines[k]   # the sides before and after corner k
        cross = d1[0] * d2[1] - d1[1] * d2[0]
        if abs(cross) > 1e-6:   # else (sides parallel, which a page's are not) the corner as simplified
            fitted[k] = p1 + d1 * (((p2 - p1)[0] * d2[1] - (p2 - p1)[1] * d2[0]) / cross)
    return fitted


def cut_out(photo: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The page within `corners` (`page_outline`'s) squared up: its width the longer of its top and bottom
    edges, its height the longer of its sides, in the photo's own pixels."""
    tl, tr, br, bl = corners
    w = round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    h = round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    square = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    warp = cv2.getPerspectiveTransform(np.float32(corners), square)
    page = cv2.warpPerspective(np.asarray(photo, np.float32), warp, (w, h), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)
    return np.clip(page, 0, 1)
