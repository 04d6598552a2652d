"""Sketch similarity search over a pushed model's gallery (exact L2 on fc_1 embeddings).

Queries are what people have: a PNG of any size, a Quick, Draw! ndjson line, or a .ndjson
file with many lines. Drawings are rendered with the pipeline's own renderer
(`components.drawing_rendering.render_png`, at the render size the model was trained on), so a
query looks like the training data; the model's `serving_png` signature does the rest.
"""
import codecs
import dataclasses
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from components import drawing_records
from components import drawing_rendering
from components import quickdraw_source
from components import retrieval
from components import strict_json
from serving import ann
from serving import registry

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
# Limits on what a query may be: a sketch needs no more (the model sees 128x128).
MAX_PNG_BYTES = 2 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 16, 4096
MAX_QUERIES = 1000
MAX_K = 100
_EMBED_BATCH = 64


class QueryError(ValueError):
  """A query that cannot be searched; the message names it (file, line) and the fix."""


@dataclasses.dataclass
class Query:
  name: str  # Where it came from: a file, or file:line for an ndjson line.
  png: bytes
  category: Optional[str] = None  # The ndjson line's "word", when it has one.


def _on_white(image: Image.Image) -> Image.Image:
  """Grayscale, transparent pixels as white paper: what a person sees, what the model needs.

  `serving_png` decodes to one channel and drops alpha, so a canvas export (black strokes on
  transparent black) would reach the model as black on black.
  """
  if image.mode == 'L' and 'transparency' not in image.info:
    return image
  paper = Image.new('RGBA', image.size, (255, 255, 255, 255))
  return Image.alpha_composite(paper, image.convert('RGBA')).convert('L')


def png_query(data: bytes, name: str) -> Query:
  """A PNG query, checked: decodable, within the size limits, not blank; sent on as a
  grayscale PNG on white (the PNG itself when it is one already)."""
  if len(data) > MAX_PNG_BYTES:
    raise QueryError(f'{name}: the PNG is {len(data)} bytes; the limit is {MAX_PNG_BYTES} '
                     '(a sketch needs far less: save it smaller)')
  try:
    with Image.open(io.BytesIO(data)) as image:
      if image.format != 'PNG':
        raise QueryError(f'{name}: a {image.format} image; send a PNG')
      width, height = image.size
      if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise QueryError(f'{name}: the image is {width}x{height} pixels; each side must be '
                         f'{MIN_SIDE} to {MAX_SIDE}')
      gray = _on_white(image)
      low, high = gray.getextrema()
      if gray is not image:
        buffer = io.BytesIO()
        gray.save(buffer, format='PNG')
        data = buffer.getvalue()
  except QueryError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many kinds.
    raise QueryError(f'{name}: not a readable PNG image ({e}); send a PNG, an ndjson line or '
                     'a .ndjson file') from e
  if low == high:
    raise QueryError(f'{name}: an empty drawing (every pixel is the same); draw something')
  return Query(name=name, png=data)


def drawing_query(line: bytes, name: str, line_number: int, render_size: int = 256,
                  stroke_width: int = 3) -> Query:
  """One Quick, Draw! ndjson line ({"drawing": [[xs, ys], ...], "word": optional}) rendered.

  Read as ingestion reads lines (`components/strict_json.py`): UTF-8 with an optional byte
  order mark, finite numbers only, nested at most `strict_json.MAX_DEPTH` deep.
  """
  try:
    record = strict_json.loads(line)
  except strict_json.JsonLineError as e:
    hint = ('; each line must be one Quick, Draw! record like '
            '{"drawing": [[[x, ...], [y, ...]], ...]}' if e.reason == strict_json.MALFORMED
            else '')
    raise QueryError(f'{name}:{line_number}: {e}{hint}') from e
  word = record.get('word') if isinstance(record, dict) else None
  try:
    strokes = drawing_records.record_drawing(record, f'{name}:{line_number}', word)
  except quickdraw_source.QuickDrawDataError as e:
    raise QueryError(str(e)) from e
  return Query(name=f'{name}:{line_number}', category=word,
               png=drawing_rendering.render_png(strokes, render_size, stroke_width))


def queries_from_bytes(data: bytes, name: str, render_size: int = 256,
                       stroke_width: int = 3) -> List[Query]:
  """A PNG (by its signature bytes) or ndjson lines (one query each)."""
  if not data.strip():
    raise QueryError(f'{name}: empty; send a PNG, an ndjson line or a .ndjson file')
  if data.startswith(PNG_MAGIC):
    return [png_query(data, name)]
  if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
    raise QueryError(f'{name}: UTF-16 text; save the ndjson as UTF-8')
  # A UTF-8 byte order mark may open the first line, as in ingestion.
  if data.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b'{'):
    # Counted before any line is parsed or drawn, so an oversized request costs little.
    lines = [(number, line) for number, line in enumerate(data.splitlines(), start=1)
             if line.strip()]
    if len(lines) > MAX_QUERIES:
      raise QueryError(f'{name}: {len(lines)} queries; at most {MAX_QUERIES} at once')
    return [drawing_query(line, name, number, render_size, stroke_width)
            for number, line in lines]
  raise QueryError(f'{name}: neither a PNG image nor Quick, Draw! ndjson; send a PNG, an '
                   'ndjson line or a .ndjson file')


def read_queries(query: str, render_size: int = 256, stroke_width: int = 3) -> List[Query]:
  """`query` is a PNG file, a .ndjson file, or one ndjson line given literally."""
  if query.lstrip().startswith('{'):
    # Arguments that are not UTF-8 come as surrogate escapes: their bytes go on to be named.
    return queries_from_bytes(query.encode('utf-8', 'surrogateescape'), '<ndjson line>',
                              render_size, stroke_width)
  if not os.path.isfile(query):
    raise QueryError(f'{query}: no such file; --query takes a PNG, a .ndjson file or an '
                     'ndjson line')
  with open(query, 'rb') as f:
    data = f.read()
  return queries_from_bytes(data, query, render_size, stroke_width)


def render_settings(card: dict) -> Tuple[int, int]:
  """(render size, stroke width) the model's training drawings were rendered with."""
  data = card.get('data') or {}
  size = data.get('render_size', 256) if isinstance(data, dict) else None
  width = data.get('stroke_width', 3) if isinstance(data, dict) else None
  # A damaged card is the registry's problem, not the query's: never a 500 or a traceback
  # (`type() is int` because True is an int).
  if not (type(size) is int and MIN_SIDE <= size <= MAX_SIDE
          and type(width) is int and 1 <= width <= size // 4):
    raise registry.DamagedVersionError(
        f'the model card of {card.get("model_name", "this model")!r} version '
        f'{card.get("version", "?")} has no usable render settings (data.render_size '
        f'{size!r}, data.stroke_width {width!r})')
  return size, width


@dataclasses.dataclass
class Neighbour:
  rank: int
  index: int  # Row in the gallery.
  id: str
  category: str
  split: str
  distance: float


@dataclasses.dataclass
class Result:
  query: Query
  predicted: str
  probability: float
  neighbours: List[Neighbour]
  # The model's most probable categories, most probable first (signatures.TOP_K of them).
  top: List[Tuple[str, float]] = dataclasses.field(default_factory=list)

  def to_dict(self) -> dict:
    return {'query': self.query.name, 'query_category': self.query.category,
            'predicted_category': self.predicted, 'probability': self.probability,
            'top_categories': [{'category': c, 'probability': p} for c, p in self.top],
            'results': [dataclasses.asdict(n) for n in self.neighbours]}


class Searcher:
  """One pushed model version and its gallery; search embeds queries with `serving_png`."""

  def __init__(self, model_version: registry.ModelVersion, index: str = 'exact'):
    if index not in ann.INDEX_KINDS:
      raise QueryError(f'index {index!r}: choose one of {", ".join(ann.INDEX_KINDS)}')
    self.model_version = model_version
    self.gallery = registry.load_gallery(model_version)
    self._model = registry.load_model(model_version)
    self._serve_png = self._model.signatures['serving_png']
    self.index = index
    self._hnsw = ann.HnswIndex(self.gallery.embedding) if index == 'hnsw' else None

  @classmethod
  def from_registry(cls, root: str, model: str, version='latest',
                    index: str = 'exact') -> 'Searcher':
    return cls(registry.resolve(root, model, version), index)

  def embed(self, pngs: Sequence[bytes]) -> dict:
    """embedding, category and probability of the predicted class, and the top classes
    [(category, probability), ...], per PNG."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    parts = {'embedding': [], 'category': [], 'probability': [], 'top': []}
    for start in range(0, len(pngs), _EMBED_BATCH):
      outputs = self._serve_png(image_png=tf.constant(list(pngs[start:start + _EMBED_BATCH])))
      parts['embedding'].append(outputs['embedding'].numpy())
      parts['category'] += [c.decode('utf-8') for c in outputs['category'].numpy()]
      parts['probability'] += list(outputs['probabilities'].numpy().max(axis=1))
      parts['top'] += [[(c.decode('utf-8'), float(p)) for c, p in zip(names, values)]
                       for names, values in zip(outputs['top5_categories'].numpy(),
                                                outputs['top5_probabilities'].numpy())]
    return {'embedding': np.concatenate(parts['embedding']), 'category': parts['category'],
            'probability': [float(p) for p in parts['probability']], 'top': parts['top']}

  def search(self, queries: Sequence[Query], k: int = 10) -> List[Result]:
    if not 1 <= k <= MAX_K:
      raise QueryError(f'k={k}: choose 1 to {MAX_K} results')
    if not queries:
      raise QueryError('no queries given')
    embedded = self.embed([q.png for q in queries])
    if self._hnsw is not None:
      indices, distances = self._hnsw.search(embedded['embedding'], k)
    else:
      indices, distances = retrieval.nearest(embedded['embedding'], self.gallery.embedding, k)
    results = []
    for q, query in enumerate(queries):
      neighbours = [Neighbour(rank=r + 1, index=int(i), id=str(self.gallery.id[i]),
                              category=str(self.gallery.category[i]),
                              split=str(self.gallery.split[i]), distance=float(d))
                    for r, (i, d) in enumerate(zip(indices[q], distances[q]))
                    if i >= 0]  # HNSW marks places it could not fill with -1.
      results.append(Result(query=query, predicted=embedded['category'][q],
                            probability=embedded['probability'][q], neighbours=neighbours,
                            top=embedded['top'][q]))
    return results


def format_result(result: Result) -> str:
  known = f', true category {result.query.category!r}' if result.query.category else ''
  lines = [f'{result.query.name}: predicted {result.predicted!r} '
           f'(p={result.probability:.3f}){known}',
           f'  {"rank":>4}  {"distance":>9}  {"category":<20} id']
  lines += [f'  {n.rank:>4}  {n.distance:>9.4f}  {n.category:<20} {n.id}'
            for n in result.neighbours]
  return '\n'.join(lines)


def write_grid(results: Sequence[Result], gallery: registry.Gallery, path: str,
               tile: int = 128) -> None:
  """One row per query: the query, then its results nearest first, each captioned."""
  caption = 14
  columns = 1 + max(len(r.neighbours) for r in results)
  grid = Image.new('L', (columns * tile, len(results) * (tile + caption)), color=255)
  pen = ImageDraw.Draw(grid)

  def place(png: bytes, row: int, column: int, text: str, ink: int = 0) -> None:
    with Image.open(io.BytesIO(png)) as image:
      thumb = image.convert('L').resize((tile - 4, tile - 4), Image.Resampling.BOX)
    x, y = column * tile, row * (tile + caption)
    grid.paste(thumb, (x + 2, y + caption))
    pen.rectangle([x + 1, y + caption - 1, x + tile - 2, y + caption + tile - 2], outline=160)
    pen.text((x + 3, y + 1), text[:tile // 6], fill=ink)

  for row, result in enumerate(results):
    # Captions of results in the query's category (its own, else the predicted) are black.
    expected = result.query.category or result.predicted
    place(result.query.png, row, 0, f'query: {result.predicted}')
    for n in result.neighbours:
      place(gallery.png[n.index], row, n.rank, f'{n.rank}. {n.category} {n.distance:.1f}',
            ink=0 if n.category == expected else 112)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  grid.save(path)
