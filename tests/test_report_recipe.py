"""The training recipe and budget in the report, from made-up Trainer histories and settings
(no pipeline, no TensorFlow): budgets of epochs, images or minutes, the schedule in words, the
learning rates, and older runs that recorded less."""
from pipeline import report_conclusions
from pipeline import report_findings
from pipeline import report_recipe
from pipeline import report_tables
from tests.report_fixtures import scored_model, small_run, trained_model


def test_training_tables_and_budget_come_from_settings_and_histories():
  budget = {'epochs': 20, 'time_budget_minutes': 35.0}
  run = small_run(
      trained_model('sknet', budget, epochs_reached=0.71, steps=2200, precision='mixed_bfloat16'),
      trained_model('skresnet', budget, epochs_reached=0.43, steps=1350, precision='float32'))
  table = report_recipe.recipe(run)
  assert table.row('training steps')[1:] == ['2,200', '1,350']
  assert table.row('precision')[1:] == ['mixed_bfloat16', 'float32']
  assert table.row('epochs reached')[1:] == ['0.71', '0.43']
  assert table.row('budget')[1:] == ['35 minutes (at most 20 epochs)'] * 2
  assert report_tables.training_settings(run).row('epochs')[1:] == ['20', '20']
  sentence = report_findings.budget(run)
  assert '35 minutes' in sentence and 'skNet 0.71' in sentence and 'skResNet 0.43' in sentence
  unequal = small_run(trained_model('sknet', {'epochs': 3}),
                      trained_model('skresnet', {'epochs': 2}))
  assert 'skNet: 3 epochs; skResNet: 2 epochs' in report_findings.budget(unequal)


def test_the_recipe_reads_the_trainers_schedule_and_budget_when_recorded():
  """history.json's schedule keys (newer Trainers) beat the settings; absent, rows go."""
  settings = {'epochs': 3, 'learning_rate': 3e-4, 'optimizer': 'adam', 'lr_schedule': 'constant'}
  recorded = trained_model('sknet', settings, optimizer='adamw', lr_schedule='linear',
                           peak_learning_rate=1e-3, warmup_fraction=0.05, label_smoothing=0.1,
                           last_learning_rate=2e-5, steps=300,
                           budget={'kind': 'images', 'value': 9600, 'total_steps': 300},
                           history={'loss': [2.0, 1.5, 1.2], 'learning_rate': [9e-4, 5e-4, 2e-5]})
  older = trained_model('skresnet', settings, steps=300, history={'loss': [2.1, 1.6, 1.3]})
  table = report_recipe.recipe(small_run(recorded, older))
  assert table.row('optimizer')[1:] == ['adamw', 'adam']
  assert table.row('learning-rate schedule')[1:] == ['linear', 'constant']
  assert table.row('peak learning rate')[1:] == ['1.00e-03', '3.00e-04']
  assert table.row('warm-up')[1] == '5% of the budget'
  assert table.row('label smoothing')[1] == '0.1'
  assert table.row('budget')[1:] == ['9,600 images (300 steps)', '3 epochs']
  assert table.row('training steps')[1] == '300 of 300'
  assert table.row('learning rate at each epoch end')[1:] == ['9.00e-04, 5.00e-04, 2.00e-05', '']
  assert table.row('learning rate at the end')[1:] == ['2.00e-05', '']
  # An old run: no recorded learning rates, so no row for them.
  assert report_recipe.recipe(small_run(older)).row('learning rate at each epoch end') is None
  long = trained_model('sknet', {}, history={'learning_rate': [1e-3 / (i + 1) for i in range(20)]})
  cell = report_recipe.recipe(small_run(long)).row('learning rate at each epoch end')[1]
  assert cell.startswith('1.00e-03, 5.00e-04') and '(12 more)' in cell and cell.endswith('5.00e-05')


def test_the_budget_and_schedule_in_words_whatever_ends_training():
  """Budgets of epochs, images or minutes (epochs 0: no epoch limit), from the history or,
  for older runs, the settings; the schedule as models/schedules.py lays it over the budget."""
  minutes = {'kind': 'minutes', 'value': 35.0, 'total_steps': 62500}
  assert report_recipe.budget_text(minutes) == '35 minutes (at most 62,500 steps)'
  assert report_recipe.budget_text({'kind': 'images', 'value': 1000000}) == '1,000,000 images'
  assert report_recipe.budget_text({'kind': 'epochs', 'value': 1, 'total_steps': 38}) == (
      '1 epoch (38 steps)')
  settings = lambda **t: report_recipe.model_budget(trained_model('m', t))
  assert settings(epochs=0, training_images=2000) == '2,000 images'
  assert settings(epochs=0, time_budget_minutes=35.0) == '35 minutes'
  assert settings(epochs=5, training_images=2000) == '5 epochs or 2,000 images'
  assert settings() == ''
  peak = {'peak_learning_rate': 1e-3}
  schedule = lambda name, warmup: report_recipe.schedule_text(
      trained_model('m', {}, lr_schedule=name, warmup_fraction=warmup, **peak))
  assert schedule('linear', 0.05) == ('linear warm-up over the first 5% of the budget to the '
                                      'peak 1.00e-03, then linear decay to zero at the '
                                      'budget\'s end')
  assert schedule('cosine', 0.0).endswith('1.00e-03, cosine decay to zero at the budget\'s end')
  assert schedule('constant', 0.0) == 'a constant 1.00e-03'
  assert '4.00e-05 up to the peak 1.00e-03 over the first 30%' in schedule('one_cycle', 0.0)
  # A Trainer before budget-wide schedules recorded no warm-up share: name and peak only.
  older = trained_model('m', {'lr_schedule': 'cosine', 'learning_rate': 3e-4, 'warmup_epochs': 1})
  assert report_recipe.schedule_text(older) == 'a cosine learning-rate schedule with peak 3.00e-04'
  assert report_recipe.recipe(small_run(older)).row('warm-up')[1] == '1 epoch'
  # The sentence states what was recorded and nothing else.
  ran = trained_model('sknet', {}, optimizer='sgd', lr_schedule='linear', warmup_fraction=0.0,
                      precision='mixed_bfloat16', budget=minutes, steps=2833, images_seen=90656,
                      epochs_reached=0.907, training_seconds=2100.0, stopped_by_time_budget=True,
                      last_learning_rate=0.0, **peak)
  sentence, = report_recipe.statements(small_run(ran))
  for fact in ('SGD with Nesterov momentum 0.9', 'from the peak 1.00e-03, linear decay to zero',
               'mixed_bfloat16', '35 minutes (at most 62,500 steps)',
               '2,833 steps on 90,656 drawings (0.91 epochs) in 35.0 min',
               'stopped by the time budget'):
    assert fact in sentence, fact
  assert report_recipe.statements(small_run(trained_model('skresnet', {}))) == []
  ending = report_findings.training_behaviour(small_run(ran))
  assert 'skNet\'s learning rate ended at 0.00e+00, 0.0% of the peak 1.00e-03, the end of the ' \
         'schedule.' in ending
  # The conclusions' scale: the budget as asked when the history has no epochs reached.
  images = small_run(trained_model('sknet', {'epochs': 0, 'training_images': 2000}))
  assert 'trained skNet: 2,000 images' in report_conclusions.scale_statement(images)


def test_training_behaviour_reads_the_loss_curve():
  falling = trained_model('sknet', {'epochs': 2}, history={'loss': [1.0, 0.8]}, epochs_reached=2.0)
  flat = trained_model('skresnet', {'epochs': 2}, history={'loss': [1.0, 0.999]},
                       epochs_reached=2.0, stopped_by_time_budget=True)
  points = report_findings.training_behaviour(small_run(falling, flat))
  assert ('skNet\'s mean training loss went from 1.000 in epoch 1 to 0.800 in epoch 2 (-20.0%).'
          in points)
  assert ('skResNet\'s mean training loss went from 1.000 in epoch 1 to 0.999 in epoch 2 '
          '(-0.1%).' in points)
  assert any('skResNet was stopped by its time budget after 2.00 epochs' in p for p in points)


def test_the_scale_statement_follows_the_full_profile():
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  full = config_lib.PROFILES['full']
  small = ' '.join(report_conclusions.conclusions(small_run(scored_model('sknet', 0.8, 0.5))))
  assert f'{full.train_per_category} drawings' in small and 'used 100 training' in small
  run = small_run(trained_model('sknet', {'epochs': 99}, epochs_reached=99.0))
  run.sampling['train_per_category'] = full.train_per_category
  assert not any('`full` profile' in p for p in report_conclusions.conclusions(run))
