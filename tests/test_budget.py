"""The training budget: the steps that epochs, a number of images or minutes allow."""
import pytest

from models import budget


def test_epochs_alone_give_whole_passes():
  result = budget.training_budget(epochs=5, images=0, minutes=0, num_train=1200, batch_size=32)
  assert (result.kind, result.steps_per_epoch, result.total_steps, result.epochs) == (
      'epochs', 38, 190, 5)


def test_images_count_partial_batches_at_each_epoch_end():
  # 2,500 images of 1,200 drawings: two passes of 38 batches (the last of 16), then 100
  # images in 4 batches.
  result = budget.training_budget(epochs=0, images=2500, minutes=0, num_train=1200,
                                  batch_size=32)
  assert (result.kind, result.total_steps, result.epochs) == ('images', 80, 3)
  assert result.to_dict() == {'kind': 'images', 'value': 2500, 'total_steps': 80,
                              'steps_per_epoch': 38, 'epochs': 3, 'seconds': 0.0}


def test_the_smaller_of_epochs_and_images_ends_training():
  assert budget.training_budget(2, 10_000, 0, 1200, 32).kind == 'epochs'
  fewer_images = budget.training_budget(20, 2400, 0, 1200, 32)
  assert (fewer_images.kind, fewer_images.total_steps) == ('images', 76)


def test_minutes_keep_the_step_limit_of_the_epochs_and_name_the_budget():
  result = budget.training_budget(20, 0, 35.0, 100_000, 32)
  assert (result.kind, result.seconds, result.total_steps) == ('minutes', 2100.0, 20 * 3125)


def test_a_time_budget_needs_epochs_or_images_for_its_schedule():
  with pytest.raises(ValueError, match='epochs >= 1 or a number of training images'):
    budget.training_budget(0, 0, 30.0, 1200, 32)


def test_no_epochs_and_no_images_is_no_training():
  result = budget.training_budget(0, 0, 0, 1200, 32)
  assert (result.total_steps, result.epochs) == (0, 0)


def test_negative_budgets_are_refused():
  with pytest.raises(ValueError, match='negative'):
    budget.training_budget(-1, 0, 0, 1200, 32)
