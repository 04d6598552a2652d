"""Classification metrics against an independent NumPy computation from the definitions."""
import numpy as np
import pytest

from components.evaluator import classification_metrics

CATEGORIES = ['arm', 'cake', 'frog', 'The Eiffel Tower', 'circle', 'stairs', 'zig zag']


def _random_split(seed, n=300, num_classes=len(CATEGORIES)):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, num_classes))
  true_ids = rng.integers(0, num_classes, size=n)
  logits[np.arange(n), true_ids] += rng.uniform(0, 2.5, size=n)  # Better than chance.
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  names = np.array(CATEGORIES[:num_classes])
  return names[true_ids], names[probabilities.argmax(axis=1)], probabilities, true_ids


@pytest.mark.parametrize('seed', [0, 1])
def test_metrics_match_the_definitions(seed):
  true, predicted, probabilities, true_ids = _random_split(seed)
  result = classification_metrics.split_metrics(true, predicted, probabilities, CATEGORIES)
  n, c = len(true), len(CATEGORIES)
  predicted_ids = probabilities.argmax(axis=1)
  confusion = np.zeros((c, c), dtype=int)
  np.add.at(confusion, (true_ids, predicted_ids), 1)
  assert result['confusion_matrix'] == confusion.tolist()
  assert result['top1'] == pytest.approx(np.trace(confusion) / n, abs=1e-12)
  top5 = np.argsort(-probabilities, axis=1)[:, :5]
  assert result['top5'] == pytest.approx(np.mean((top5 == true_ids[:, None]).any(axis=1)),
                                         abs=1e-12)
  tp = np.diag(confusion).astype(float)
  precision = tp / np.maximum(confusion.sum(axis=0), 1)
  recall = tp / confusion.sum(axis=1)
  f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
  assert result['macro_precision'] == pytest.approx(precision.mean(), abs=1e-12)
  assert result['macro_recall'] == pytest.approx(recall.mean(), abs=1e-12)
  assert result['macro_f1'] == pytest.approx(f1.mean(), abs=1e-12)
  for i, category in enumerate(CATEGORIES):
    row = result['per_class'][category]
    assert row['accuracy'] == pytest.approx(recall[i], abs=1e-12)
    assert row['precision'] == pytest.approx(precision[i], abs=1e-12)
    assert row['support'] == confusion[i].sum()
  assert result['examples'] == n and result['unknown'] == []


def test_absent_class_unknown_category_and_fewer_than_five_classes():
  categories = ['a', 'b', 'c']
  true = np.array(['a', 'a', 'b', 'mystery'])
  predicted = np.array(['a', 'b', 'b', 'a'])
  probabilities = np.array([[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.5, .3, .2]])
  result = classification_metrics.split_metrics(true, predicted, probabilities, categories)
  assert result['top1'] == pytest.approx(2 / 4)
  assert result['top5'] == pytest.approx(3 / 4)  # 3 classes: every known category is in top 5.
  assert result['per_class']['c'] == {'accuracy': None, 'precision': 0.0, 'f1': 0.0,
                                      'support': 0}
  assert result['unknown'] == ['mystery']
  assert result['confusion_matrix'] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_mismatched_probabilities_are_refused():
  with pytest.raises(ValueError, match='do not match'):
    classification_metrics.split_metrics(['a'], ['a'], np.ones((1, 2)), ['a', 'b', 'c'])


@pytest.mark.parametrize('seed', [0, 1])
def test_per_drawing_hits_average_to_top1_and_top5(seed):
  true, predicted, probabilities, _ = _random_split(seed)
  true = np.concatenate([true, ['mystery']])  # Unknown: a miss at top-1 and top-5.
  predicted = np.concatenate([predicted, ['arm']])
  probabilities = np.concatenate([probabilities, np.full((1, len(CATEGORIES)), 1 / 7)])
  result = classification_metrics.split_metrics(true, predicted, probabilities, CATEGORIES)
  hits = classification_metrics.correct(true, predicted, probabilities, CATEGORIES)
  assert set(np.unique(hits['top1'])) <= {0.0, 1.0} and hits['top5'][-1] == 0.0
  assert hits['top1'].mean() == pytest.approx(result['top1'], abs=1e-12)
  assert hits['top5'].mean() == pytest.approx(result['top5'], abs=1e-12)


def test_top_k_hits_order_ties_as_scikit_learn():
  from sklearn.metrics import top_k_accuracy_score  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  probabilities = rng.integers(0, 3, size=(400, 7)).astype(float)  # Many equal values.
  true_ids = rng.integers(0, 7, size=400)
  for k in (1, 2, 5):
    hits = classification_metrics.top_k_hits(true_ids, probabilities, k)
    assert hits.mean() == pytest.approx(top_k_accuracy_score(
        true_ids, probabilities, k=k, labels=np.arange(7)), abs=1e-12)
