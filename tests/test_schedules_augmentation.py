"""Learning-rate schedules against their formulas; augmentation against hand-made images."""
import math

import numpy as np
import pytest
import tensorflow as tf

from models import augmentation
from models import schedules


def test_cosine_rises_linearly_then_decays_to_zero():
  rate = schedules.learning_rate('cosine', 1e-3, total_steps=110, warmup_steps=10)
  values = [float(rate(step)) for step in range(0, 111)]
  np.testing.assert_allclose(values[:10], [1e-3 * s / 10 for s in range(10)], rtol=1e-5,
                             atol=1e-9)
  np.testing.assert_allclose(values[10], 1e-3, rtol=1e-6)
  np.testing.assert_allclose(values[60], 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)), rtol=1e-5)
  assert values[110] == pytest.approx(0.0, abs=1e-9)
  assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_linear_rises_then_falls_to_zero_exactly_at_the_budget():
  rate = schedules.learning_rate('linear', 2e-3, total_steps=110, warmup_steps=10)
  assert float(rate(0)) == 0.0
  assert float(rate(5)) == pytest.approx(1e-3)
  assert float(rate(10)) == pytest.approx(2e-3)
  assert float(rate(60)) == pytest.approx(1e-3)
  assert float(rate(109)) == pytest.approx(2e-3 / 100, rel=1e-4)
  assert float(rate(110)) == 0.0 and float(rate(500)) == 0.0


def test_one_cycle_starts_low_peaks_after_30_percent_and_ends_near_zero():
  rate = schedules.learning_rate('one_cycle', 1e-2, total_steps=100)
  assert float(rate(0)) == pytest.approx(1e-2 / 25)
  assert float(rate(30)) == pytest.approx(1e-2)
  assert float(rate(100)) == pytest.approx(1e-6, rel=1e-3)
  assert max(float(rate(s)) for s in range(101)) == pytest.approx(1e-2)


def test_constant_holds_its_rate_after_the_warm_up_and_unknown_names_are_refused():
  rate = schedules.learning_rate('constant', 3e-4, 100, warmup_steps=4)
  assert float(rate(2)) == pytest.approx(1.5e-4)
  assert [float(rate(s)) for s in (4, 50, 100, 1000)] == pytest.approx([3e-4] * 4)
  with pytest.raises(ValueError, match='unknown lr_schedule'):
    schedules.learning_rate('step', 3e-4, 100)
  with pytest.raises(ValueError, match='unknown optimizer'):
    schedules.optimizer('lamb', 3e-4)


def test_a_time_budget_clock_moves_the_schedule_ahead_of_the_step_count():
  # A slow machine: 10 steps done but 75% of the minutes spent, so the rate is where
  # 75% of the curve is, and it reaches zero when the minutes run out.
  clock = tf.Variable(0.0)
  rate = schedules.learning_rate('linear', 1e-3, total_steps=100, clock=clock)
  assert float(rate(10)) == pytest.approx(9e-4)
  clock.assign(75.0)
  assert float(rate(10)) == pytest.approx(2.5e-4)
  clock.assign(100.0)
  assert float(rate(10)) == 0.0


def test_current_rate_reads_the_optimizer_at_its_step():
  optimizer = schedules.optimizer('adam', schedules.learning_rate('linear', 1e-3, 10))
  variable = tf.Variable([1.0])
  for _ in range(5):
    optimizer.apply_gradients([(tf.constant([0.1]), variable)])
  assert schedules.current_rate(optimizer) == pytest.approx(5e-4)
  assert schedules.current_rate(schedules.optimizer('adam', 3e-4)) == pytest.approx(3e-4)


def test_weight_decay_spares_batchnorm_and_biases():
  optimizer = schedules.optimizer('adamw', 1e-3, weight_decay=0.1)
  kernel = tf.Variable(tf.ones([2]), name='conv1_1/kernel')
  gamma = tf.Variable(tf.ones([2]), name='conv1_1_bn/gamma')
  bias = tf.Variable(tf.ones([2]), name='fc_1/bias')
  optimizer.apply_gradients([(tf.zeros([2]), v) for v in (kernel, gamma, bias)])
  assert float(kernel[0]) < 1.0  # Decayed: 1 - lr * wd.
  assert float(gamma[0]) == 1.0 and float(bias[0]) == 1.0


def _dot(size=32, at=(16, 16)):
  image = np.zeros((1, size, size, 1), np.float32)
  image[0, at[0] - 1:at[0] + 1, at[1] - 1:at[1] + 1] = 1.0
  return tf.constant(image)


def _centre_of_ink(image):
  ink = image[0, :, :, 0].numpy()
  rows, cols = np.nonzero(ink > 0.25)
  return rows.mean(), cols.mean()


def test_no_change_when_all_ranges_are_zero():
  image = _dot()
  same = augmentation.random_affine(image, augmentation.Augmentation(0, 0, 0))
  np.testing.assert_allclose(same.numpy(), image.numpy(), atol=1e-5)


def test_shift_moves_ink_within_the_range_and_keeps_paper_blank():
  tf.random.set_seed(3)
  image = tf.concat([_dot()] * 64, axis=0)
  moved = augmentation.random_affine(image, augmentation.Augmentation(0.25, 0, 0)).numpy()
  offsets = []
  for one in moved:
    rows, cols = np.nonzero(one[:, :, 0] > 0.25)
    offsets.append((rows.mean() - 15.5, cols.mean() - 15.5))
  offsets = np.abs(np.array(offsets))
  assert offsets.max() <= 0.25 * 32 + 1  # Never further than the range allows.
  assert offsets.max() > 2  # And it does move.
  assert moved.min() >= -1e-6 and moved.max() <= 1 + 1e-6


def test_rotation_turns_a_horizontal_bar():
  image = np.zeros((1, 33, 33, 1), np.float32)
  image[0, 16, 4:29] = 1.0
  tf.random.set_seed(0)
  turned = augmentation.random_affine(
      tf.constant(image), augmentation.Augmentation(0, 0, 45)).numpy()[0, :, :, 0]
  rows = np.nonzero(turned > 0.25)[0]
  assert rows.max() - rows.min() > 2  # No longer a single row.


def test_stroke_jitter_thickens_only_the_chosen_share():
  images = tf.concat([_dot()] * 200, axis=0)
  tf.random.set_seed(1)
  out = augmentation.stroke_jitter(images, 0.3).numpy()
  ink = (out > 0.5).reshape(200, -1).sum(axis=1)
  assert set(ink) == {4, 16}  # 2x2 dot, or 4x4 after a 3x3 dilation.
  assert 0.2 < np.mean(ink == 16) < 0.4
