"""The report's figures of drawings: test drawings as the models see them, grouped by what the
text says about them (a sample, the easiest and hardest categories, the frequent confusions).

Every picture is a test drawing of the run (the ExampleGen's PNG), decoded and resized by the
models' own Transform step; which drawings are shown follows from the run's values alone (the
category order of the per-category figure, the Evaluator's predictions per drawing).
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np

from pipeline import report_data
from pipeline import report_tables
from pipeline.report_category_figures import pyplot, save


def as_model_input(pngs: Sequence[bytes], image_size: int) -> np.ndarray:
  """The drawings exactly as the models see them (the Transform's decode and resize)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from models import preprocessing  # pylint: disable=g-import-not-at-top
  return preprocessing.decode_and_resize(tf.constant(list(pngs)), image_size).numpy()[..., 0]


def _by_category(run: report_data.RunResults) -> Dict[str, List[bytes]]:
  """Each category's test drawings, in drawing-id order."""
  by_category: Dict[str, List[bytes]] = {}
  for drawing_id in sorted(run.test_drawings):
    category, png = run.test_drawings[drawing_id]
    by_category.setdefault(category, []).append(png)
  return by_category


def _grid(rows: List[Tuple[str, List[bytes]]], image_size: int, title: str, path: str,
          per_row: int) -> None:
  """One row of drawings per (label, PNGs), the label on the left."""
  plt = pyplot()
  figure, axes = plt.subplots(len(rows), per_row, squeeze=False,
                              figsize=(1.6 * per_row + 0.8, 1.7 * len(rows)))
  for r, (label, pngs) in enumerate(rows):
    images = as_model_input(pngs[:per_row], image_size) if pngs else []
    for column in range(per_row):
      ax = axes[r][column]
      ax.set_xticks([])
      ax.set_yticks([])
      if column < len(images):
        ax.imshow(images[column], cmap='gray_r', vmin=0, vmax=1)
      else:
        for spine in ax.spines.values():
          spine.set_visible(False)
      if column == 0:
        ax.set_ylabel(label, fontsize=8)
  figure.suptitle(title, fontsize=10)
  save(figure, path)


def figure_samples(run: report_data.RunResults, path: str, categories: int = 6,
                   per_category: int = 5) -> bool:
  by_category = _by_category(run)
  chosen = sorted(by_category)[:categories]
  if not chosen:
    return False
  _grid([(c, by_category[c]) for c in chosen], run.image_size,
        f'Test drawings as the models see them ({run.image_size}x{run.image_size})', path,
        per_category)
  return True


def figure_extremes(run: report_data.RunResults, order: Sequence[str], path: str,
                    count: int = 3, per_category: int = 5) -> bool:
  """The `count` easiest and hardest categories (`order`: best mean test accuracy first),
  fewer when the run has fewer than twice as many."""
  by_category = _by_category(run)
  order = [c for c in order if c in by_category]
  count = min(count, len(order) // 2)
  if not count:
    return False
  rows = ([(f'easiest {i + 1}:\n{c}', by_category[c]) for i, c in enumerate(order[:count])] +
          [(f'hardest {i + 1}:\n{c}', by_category[c])
           for i, c in enumerate(reversed(order[-count:]))])
  _grid(rows, run.image_size, 'The easiest and hardest categories (mean test accuracy of the '
        'models)', path, per_category)
  return True


def confused_drawings(model: report_data.ModelResults, pairs: int = 4,
                      per_pair: int = 5) -> List[Tuple[str, str, List[str]]]:
  """(true, predicted, drawing ids) of the model's most frequent confusions, the drawings
  being the test drawings of the true category it predicted as the other, by id."""
  found = []
  categories = model.per_query.get('category')
  predicted = model.per_query.get('predicted')
  ids = model.per_query.get('id')
  if categories is None or predicted is None or ids is None:
    return []
  for true, wrong, _, _ in report_tables.confusion_pairs(model, pairs):
    chosen = sorted(str(i) for i, c, p in zip(ids, categories, predicted)
                    if c == true and p == wrong)[:per_pair]
    if chosen:
      found.append((true, wrong, chosen))
  return found


def figure_confusions(run: report_data.RunResults, model: report_data.ModelResults,
                      path: str, per_pair: int = 5) -> bool:
  confused = confused_drawings(model, per_pair=per_pair)
  confused = [(t, p, [i for i in ids if i in run.test_drawings]) for t, p, ids in confused]
  confused = [c for c in confused if c[2]]
  if not confused:
    return False
  rows = [(f'{t}\ntaken for\n{p}', [run.test_drawings[i][1] for i in ids])
          for t, p, ids in confused]
  _grid(rows, run.image_size, f'{model.title}: test drawings of its most frequent confusions',
        path, per_pair)
  return True
