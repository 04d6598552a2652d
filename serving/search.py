"""Sketch similarity search over a pushed model's gallery (exact L2 on fc_1 embeddings).

Queries are what people have: a PNG of any size, a Quick, Draw! ndjson line, or a .ndjson
file with many lines. Drawings are rendered with the pipeline's own renderer
(`domain.drawing_rendering.render_png`, at the render size the model was trained on), so a
query looks like the training data; the model's `serving_png` signature does the rest.
"""
import codecs
import dataclasses
import io
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from domain import drawing_records
from domain import drawing_rendering
from domain import quickdraw_source
from domain import retrieval
from domain import strict_json
from serving import ann
from serving import png_decoding
from serving import registry

PNG_MAGIC = png_decoding.PNG_MAGIC
MIN_SIDE, MAX_SIDE = png_decoding.MIN_SIDE, png_decoding.MAX_SIDE
MAX_K = 100
_EMBED_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Budget:
  """The most one call may ask for: drawings (each a model call, 70-140 ms of both cores of a
  2-core CPU) and the points they hold in all (drawn one segment at a time)."""
  queries: int
  points: int


# One HTTP request: a few seconds of work at most. Quick, Draw! drawings hold 36 points
# (median) and rarely over 200, so 500 a drawing on average is room to spare.
REQUEST_BUDGET = Budget(queries=64, points=32_000)
# The command line's files: the user's own machine and time.
FILE_BUDGET = Budget(queries=1000, points=1_000_000)


class QueryError(ValueError):
  """A query that cannot be searched; the message names it (file, line) and the fix."""


@dataclasses.dataclass
class Query:
  name: str  # Where it came from: a file, or file:line for an ndjson line.
  png: bytes
  category: Optional[str] = None  # The ndjson line's "word", when it has one.


def png_query(data: bytes, name: str) -> Query:
  """A PNG query, checked and decoded under a memory budget (`serving/png_decoding.py`);
  sent on as a small grayscale PNG on white (the PNG itself when it is one already)."""
  try:
    return Query(name=name, png=png_decoding.model_png(data))
  except png_decoding.PngError as e:
    raise QueryError(f'{name}: {e}') from None


_JSON_TYPES = {bool: 'true or false', int: 'a number', float: 'a number', list: 'a list',
               dict: 'an object', type(None): 'null'}


def read_drawing(line: bytes, name: str, line_number: int
                 ) -> Tuple[drawing_records.Drawing, Optional[str]]:
  """The checked strokes and "word" of one Quick, Draw! ndjson line
  ({"drawing": [[xs, ys], ...], "word": optional}).

  Read as ingestion reads lines (`domain/strict_json.py`): UTF-8 with an optional byte
  order mark, finite numbers only, nested at most `strict_json.MAX_DEPTH` deep.
  """
  where = f'{name}:{line_number}'
  try:
    record = strict_json.loads(line)
  except strict_json.JsonLineError as e:
    hint = ('; each line must be one Quick, Draw! record like '
            '{"drawing": [[[x, ...], [y, ...]], ...]}' if e.reason == strict_json.MALFORMED
            else '')
    raise QueryError(f'{where}: {e}{hint}') from e
  word = record.get('word') if isinstance(record, dict) else None
  if isinstance(record, dict) and 'word' in record and not isinstance(word, str):
    raise QueryError(f'{where}: "word" must be a string (the category\'s name), not '
                     f'{_JSON_TYPES.get(type(word), "that")}')
  try:
    return drawing_records.record_drawing(record, where, word), word
  except quickdraw_source.QuickDrawDataError as e:
    raise QueryError(str(e)) from e


def drawing_query(line: bytes, name: str, line_number: int, render_size: int = 256,
                  stroke_width: int = 3) -> Query:
  """One Quick, Draw! ndjson line rendered as the training drawings were."""
  strokes, word = read_drawing(line, name, line_number)
  return Query(name=f'{name}:{line_number}', category=word,
               png=drawing_rendering.render_png(strokes, render_size, stroke_width))


def queries_from_bytes(data: bytes, name: str, render_size: int = 256, stroke_width: int = 3,
                       budget: Budget = REQUEST_BUDGET) -> List[Query]:
  """A PNG (by its signature bytes) or ndjson lines (one query each), within `budget`."""
  if not data.strip():
    raise QueryError(f'{name}: empty; send a PNG, an ndjson line or a .ndjson file')
  if data.startswith(PNG_MAGIC):
    return [png_query(data, name)]
  if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
    raise QueryError(f'{name}: UTF-16 text; save the ndjson as UTF-8')
  # A UTF-8 byte order mark may open the first line, as in ingestion.
  if not data.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b'{'):
    raise QueryError(f'{name}: neither a PNG image nor Quick, Draw! ndjson; send a PNG, an '
                     'ndjson line or a .ndjson file')
  # Lines are counted before any is parsed, and every line is parsed and its points counted
  # before any is drawn: a request over the budget costs little.
  lines = [(number, line) for number, line in enumerate(data.splitlines(), start=1)
           if line.strip()]
  if len(lines) > budget.queries:
    raise QueryError(f'{name}: {len(lines)} queries; at most {budget.queries} at once')
  drawings, points = [], 0
  for number, line in lines:
    strokes, word = read_drawing(line, name, number)
    points += sum(len(xs) for xs, _ in strokes)
    if points > budget.points:
      raise QueryError(f'{name}:{number}: the drawings up to this line hold {points} points; '
                       f'at most {budget.points} at once (in at most {budget.queries} '
                       'drawings): send fewer or simpler drawings')
    drawings.append((number, strokes, word))
  return [Query(name=f'{name}:{number}', category=word,
                png=drawing_rendering.render_png(strokes, render_size, stroke_width))
          for number, strokes, word in drawings]


def read_queries(query: str, render_size: int = 256, stroke_width: int = 3) -> List[Query]:
  """`query` is a PNG file, a .ndjson file, or one ndjson line given literally."""
  if query.lstrip().startswith('{'):
    # Arguments that are not UTF-8 come as surrogate escapes: their bytes go on to be named.
    return queries_from_bytes(query.encode('utf-8', 'surrogateescape'), '<ndjson line>',
                              render_size, stroke_width, FILE_BUDGET)
  if not os.path.isfile(query):
    raise QueryError(f'{query}: no such file; --query takes a PNG, a .ndjson file or an '
                     'ndjson line')
  with open(query, 'rb') as f:
    data = f.read()
  return queries_from_bytes(data, query, render_size, stroke_width, FILE_BUDGET)


# Checked with the card when a version is resolved (a damaged card makes a damaged version).
render_settings = registry.render_settings


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
    self._serve_png = self._model.signatures[registry.SEARCH_SIGNATURE]
    self.index = index
    self._hnsw = ann.HnswIndex(self.gallery.embedding) if index == 'hnsw' else None

  @classmethod
  def from_registry(cls, root: str, model: str, version='latest',
                    index: str = 'exact') -> 'Searcher':
    """The version asked for; for "latest", the newest one that loads."""
    return registry.load_newest(root, model, version, lambda found: cls(found, index))

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
