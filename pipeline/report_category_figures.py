"""The report's per-category figures: readable at 3 categories and at 100 or more.

A table per category stops being read past twenty rows, so every category goes into
figures instead: accuracy and AP of both models as a sorted dot plot, and each model's
confusion matrix as a heatmap, all in one category order (the models' mean test accuracy,
best first) so that a category sits at the same place in every figure.
"""
from typing import Any, Dict, List, Optional, Sequence
import warnings

import numpy as np

from pipeline.report_data import get_path

# Below this font size (points) a heatmap's category labels are left out, with a note.
MIN_LABEL_POINTS = 4.0
# Largest heatmap side (inches): wider images are scaled down in the HTML page anyway.
MAX_HEATMAP_INCHES = 11.0
# Up to this many categories the heatmap's cells show their counts.
ANNOTATED_CATEGORIES = 15
MODEL_STYLES = (('tab:blue', 'o'), ('tab:orange', 's'), ('tab:green', '^'), ('tab:red', 'D'))


def pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save(figure, path: str, dpi: int = 100) -> None:
  figure.savefig(path, dpi=dpi, bbox_inches='tight')
  pyplot().close(figure)


def per_category(model) -> Dict[str, Dict[str, Optional[float]]]:
  """{category: {'accuracy', 'ap'}} of the test split, for categories with test drawings."""
  per_class = get_path(model.metrics, 'classification.test.per_class') or {}
  per_ap = get_path(model.metrics, 'retrieval.l2.per_category_ap') or {}
  result = {}
  for category in list(per_ap) + [c for c in per_class if c not in per_ap]:
    accuracy = get_path(per_class, f'{category}.accuracy')
    ap = per_ap.get(category)
    if accuracy is not None or ap is not None:
      result[category] = {'accuracy': accuracy, 'ap': ap}
  return result


def category_order(models: Sequence) -> List[str]:
  """Categories by the models' mean test accuracy, then mean AP, best first; then by name."""
  tables = [per_category(m) for m in models]
  names = sorted({c for table in tables for c in table})

  def mean(category, key):
    values = [t[category][key] for t in tables
              if category in t and t[category][key] is not None]
    return float(np.mean(values)) if values else -1.0
  return sorted(names, key=lambda c: (-mean(c, 'accuracy'), -mean(c, 'ap'), c))


def figure_per_category(models: Sequence, order: Sequence[str], path: str) -> bool:
  """Test accuracy and AP (L2) of every category, one marker per model, in `order`."""
  tables = [per_category(m) for m in models]
  if not order or not any(tables):
    return False
  plt = pyplot()
  from matplotlib import lines  # pylint: disable=g-import-not-at-top
  n = len(order)
  figure, axes = plt.subplots(1, 2, sharey=True, figsize=(10, max(3.0, 0.16 * n + 1.6)),
                              layout='constrained')
  rows = np.arange(n)
  panels = (('accuracy', 'test accuracy (recall of the category)', 'test_accuracy',
             'chance_accuracy', 'chance'),
            ('ap', 'AP (L2, fc_1): mean over its queries', 'map', 'floors.random_map',
             'random ranking'))
  for ax, (key, title, overall_key, floor_key, floor_label) in zip(axes, panels):
    values = np.array([[np.nan if t.get(c, {}).get(key) is None else t[c][key] for c in order]
                       for t in tables], dtype=float)
    if len(models) >= 2:  # A thin line from one model's value to the other's.
      with warnings.catch_warnings():  # A category no model scored: all NaN, no line.
        warnings.simplefilter('ignore', RuntimeWarning)
        ax.hlines(rows, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color='0.75',
                  lw=1, zorder=1)
    overall = []
    for index, (model, row) in enumerate(zip(models, values)):
      colour, marker = MODEL_STYLES[index % len(MODEL_STYLES)]
      ax.scatter(row, rows, s=16, color=colour, marker=marker, zorder=2)
      value = get_path(model.metrics, overall_key)
      if value is not None:
        ax.axvline(value, color=colour, ls='--', lw=0.9)
        overall.append(f'{model.title} {value:.3f}')
    floor = get_path(models[0].metrics, floor_key)
    if floor is not None:
      ax.axvline(floor, color='gray', ls=':', lw=1)
      overall.append(f'{floor_label} {floor:.3f}')
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(f'{title}\noverall: {", ".join(overall)}', fontsize=9)
    ax.grid(axis='x', alpha=0.3)
  axes[0].set_yticks(rows, list(order), fontsize=8 if n <= 40 else 7)
  axes[0].set_ylim(n - 0.5, -0.5)  # Best at the top.
  axes[0].set_ylabel(f'{n} categories, best mean test accuracy first', fontsize=8)
  handles = [lines.Line2D([], [], color=colour, marker=marker, ls='', label=model.title)
             for model, (colour, marker) in zip(models, MODEL_STYLES)]
  handles += [lines.Line2D([], [], color='black', ls='--', lw=0.9,
                           label='dashed: the model\'s overall value'),
              lines.Line2D([], [], color='gray', ls=':', lw=1,
                           label='dotted: chance / random ranking')]
  figure.legend(handles=handles, loc='outside upper center', ncol=len(handles), fontsize=8,
                frameon=False)
  save(figure, path)
  return True


def heatmap_layout(categories: int) -> Dict[str, Any]:
  """Side (inches), label font size (points, None: no labels) and dpi for n categories."""
  side = min(MAX_HEATMAP_INCHES, max(4.0, 0.11 * categories + 2.0))
  font = min(9.0, 0.85 * 72 * side * 0.8 / max(categories, 1))
  labelled = font >= MIN_LABEL_POINTS
  return {'side': side, 'font': font if labelled else None,
          'dpi': 100 if categories <= 40 else 150}  # Small labels stay sharp when zoomed.


def heatmap_note(categories: int) -> str:
  """What the text says under a heatmap whose labels were left out ('' when labelled)."""
  if heatmap_layout(categories)['font'] is not None:
    return ''
  return (f'Category names are left out at {categories} categories; rows and columns follow '
          'the order of the per-category figure (best mean test accuracy first).')


def figure_confusion(model, order: Sequence[str], path: str) -> bool:
  """The test confusion matrix as a heatmap of row shares, rows and columns in `order`
  (then the vocabulary's categories without test drawings); False without a matrix."""
  matrix = get_path(model.metrics, 'classification.test.confusion_matrix')
  names = get_path(model.metrics, 'classification.categories')
  if not matrix or not names:
    return False
  index = {c: i for i, c in enumerate(names)}
  ordered = set(order)
  shown = [c for c in order if c in index] + [c for c in names if c not in ordered]
  take = [index[c] for c in shown]
  counts = np.asarray(matrix, dtype=float)[np.ix_(take, take)]
  totals = counts.sum(axis=1, keepdims=True)
  shares = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
  layout = heatmap_layout(len(shown))
  plt = pyplot()
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  figure, ax = plt.subplots(figsize=(layout['side'] + 1.2, layout['side']))
  # Square root scale: a single confused drawing in 50 stays visible next to the diagonal.
  image = ax.imshow(shares, cmap='Blues', norm=colors.PowerNorm(gamma=0.5, vmin=0, vmax=1),
                    interpolation='nearest')
  bar = figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
  bar.set_label('share of the true category\'s drawings (square-root scale)', fontsize=8)
  if len(shown) <= ANNOTATED_CATEGORIES:  # Few cells: the counts themselves.
    for (row, column), count in np.ndenumerate(counts):
      if count:
        ax.text(column, row, f'{count:.0f}', ha='center', va='center', fontsize=8,
                color='white' if shares[row, column] > 0.4 else 'black')
  if layout['font'] is not None:
    ticks = np.arange(len(shown))
    ax.set_xticks(ticks, shown, rotation=90, fontsize=layout['font'])
    ax.set_yticks(ticks, shown, fontsize=layout['font'])
  else:  # heatmap_note says why.
    ax.set_xticks([])
    ax.set_yticks([])
  ax.set_xlabel('predicted category')
  ax.set_ylabel('true category')
  ax.set_title(f'{model.title}: confusion matrix, test split\n{len(shown)} categories by mean '
               'test accuracy of the models, best first', fontsize=9)
  save(figure, path, dpi=layout['dpi'])
  return True
