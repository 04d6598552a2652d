"""Google's simplification of raw Quick, Draw! strokes into the `simplified` format.

The dataset's README describes it: align the drawing to the top-left corner (minimum 0),
scale it uniformly to a maximum of 255, resample every stroke at 1-pixel spacing, then
simplify each stroke with Ramer-Douglas-Peucker at epsilon 2.0. Coordinates are rounded to
integers as in the published files. RDP itself is shapely's (GEOS) Douglas-Peucker.
"""
from typing import List, Sequence, Tuple

import numpy as np
import shapely

SIMPLIFIED_MAX = 255
RDP_EPSILON = 2.0

Strokes = List[Tuple[List[int], List[int]]]


def resample(points: np.ndarray, spacing: float = 1.0) -> np.ndarray:
  """Points every `spacing` along the polyline `points` (n, 2), keeping both ends."""
  steps = np.diff(points, axis=0)
  lengths = np.hypot(steps[:, 0], steps[:, 1])
  points = points[np.concatenate([[True], lengths > 0])]  # Repeated points add nothing.
  lengths = lengths[lengths > 0]
  if not lengths.size:
    return points[:1]
  along = np.concatenate([[0.0], np.cumsum(lengths)])
  targets = np.arange(0.0, along[-1], spacing)
  if targets[-1] < along[-1]:
    targets = np.append(targets, along[-1])
  return np.column_stack([np.interp(targets, along, points[:, 0]),
                          np.interp(targets, along, points[:, 1])])


def rdp(points: np.ndarray, epsilon: float = RDP_EPSILON) -> np.ndarray:
  """Ramer-Douglas-Peucker: the fewest of `points` that stay within `epsilon` of the line."""
  if len(points) < 3:
    return points
  line = shapely.LineString(points)
  return np.asarray(shapely.simplify(line, epsilon, preserve_topology=False).coords)


def simplify(strokes: Sequence[Tuple[Sequence[float], Sequence[float]]],
             epsilon: float = RDP_EPSILON) -> Strokes:
  """Raw (x, y) strokes of any scale as simplified strokes: integers in 0..255."""
  xs = np.concatenate([np.asarray(x, dtype=float) for x, _ in strokes])
  ys = np.concatenate([np.asarray(y, dtype=float) for _, y in strokes])
  extent = max(xs.max() - xs.min(), ys.max() - ys.min())
  scale = SIMPLIFIED_MAX / extent if extent > 0 else 1.0
  result = []
  for x, y in strokes:
    points = np.column_stack([(np.asarray(x, dtype=float) - xs.min()) * scale,
                              (np.asarray(y, dtype=float) - ys.min()) * scale])
    points = np.clip(np.rint(rdp(resample(points), epsilon)), 0, SIMPLIFIED_MAX).astype(int)
    result.append((points[:, 0].tolist(), points[:, 1].tolist()))
  return result
