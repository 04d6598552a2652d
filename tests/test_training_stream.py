"""The Trainer's training stream mixes categories from the first batch, although ExampleGen
writes the drawings grouped by category."""
import collections

import pytest

from tests import training_fixtures

PER_CATEGORY = 120  # 360 drawings in three blocks of one category each.


@pytest.fixture(scope='module')
def grouped(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('grouped'))
  examples = training_fixtures.write_examples(folder + '/examples', PER_CATEGORY, 1)
  return examples, training_fixtures.build_transform_graph(examples, folder + '/transform')


def _first_labels(grouped, shuffle_buffer, drawings=90):
  import tensorflow_transform as tft

  from models import trainer

  examples, transform = grouped
  args = training_fixtures.fn_args(examples, transform, '/nonexistent')
  batches = trainer._dataset(args.train_files, args.data_accessor,
                             tft.TFTransformOutput(transform), batch_size=30, shuffle=True,
                             seed=1, shuffle_buffer=shuffle_buffer)
  labels = [int(label) for _, batch in batches.take(drawings // 30) for label in batch]
  return collections.Counter(labels)


def test_the_whole_split_is_shuffled_so_early_batches_hold_every_category(grouped):
  from models import trainer

  buffer = trainer.shuffle_buffer_size(0, 3 * PER_CATEGORY)
  assert buffer == 3 * PER_CATEGORY
  counts = _first_labels(grouped, buffer)
  # A uniform shuffle: each category about a third of the first 90 drawings.
  assert sorted(counts) == [0, 1, 2]
  assert all(15 <= n <= 45 for n in counts.values()), counts


def test_a_small_buffer_keeps_the_category_blocks(grouped):
  """What a buffer smaller than the split does to grouped files (the spec run's trap)."""
  from models import trainer

  assert trainer.shuffle_buffer_size(40, 3 * PER_CATEGORY) == 40
  counts = _first_labels(grouped, 40)
  assert max(counts.values()) >= 80, counts
