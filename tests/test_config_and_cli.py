"""Profiles, the data-source default, and the runner's console and bad-source handling."""
import logging
import os

import pytest

from pipeline import config as config_lib
from pipeline import run as run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_full_profile_is_the_specification():
  full = config_lib.PROFILES['full']
  assert (full.num_categories, full.train_per_category, full.test_per_category) == (100, 1000, 50)
  assert full.image_size == 128
  assert set(full.training) == set(config_lib.MODEL_NAMES)
  # Locally, its Beam stages use both cores (benchmarks/README.md, the specification sample).
  assert set(full.beam_pipeline_args) == {'--direct_running_mode=multi_processing',
                                          '--direct_num_workers=2'}


def test_spec_profile_is_the_specification_with_a_cpu_budget():
  spec = config_lib.PROFILES['spec']
  assert (spec.num_categories, spec.train_per_category, spec.test_per_category,
          spec.image_size) == (100, 1000, 50, 128)
  # A wall-clock budget per model, the whole test split, train accuracy on a stated sample.
  assert all(t.time_budget_minutes > 0 for t in spec.training.values())
  assert spec.train_eval_max_examples == 5000
  assert spec.pipeline_name not in {c.pipeline_name for n, c in config_lib.PROFILES.items()
                                    if n != 'spec'}


@pytest.mark.parametrize('name', sorted(config_lib.PROFILES))
def test_both_models_get_the_same_training_budget_in_every_profile(name):
  sknet, skresnet = (config_lib.PROFILES[name].training[m] for m in config_lib.MODEL_NAMES)
  assert sknet == skresnet


def test_profiles_have_distinct_metadata_and_ordered_sizes():
  sizes = [config_lib.PROFILES[p] for p in ('smoke', 'default', 'full')]
  assert [c.num_categories * c.train_per_category for c in sizes] == sorted(
      c.num_categories * c.train_per_category for c in sizes)
  assert len({c.pipeline_name for c in sizes}) == 3


def test_source_precedence(monkeypatch, tmp_path):
  monkeypatch.setenv('QUICKDRAW_SOURCE', '/data/qd')
  assert config_lib.default_source() == '/data/qd'
  monkeypatch.delenv('QUICKDRAW_SOURCE')
  (tmp_path / 'project').mkdir()
  assert config_lib.default_source(str(tmp_path / 'project')) == config_lib.PUBLIC_BUCKET
  shared = tmp_path / 'shared' / 'quickdraw' / 'simplified'
  shared.mkdir(parents=True)
  assert config_lib.default_source(str(tmp_path / 'project')) == str(shared)


def test_overrides_and_unknown_profile():
  config = config_lib.profile('smoke', source='/x', seed=7)
  assert (config.source, config.seed, config.profile) == ('/x', 7, 'smoke')
  with pytest.raises(ValueError, match='unknown profile'):
    config_lib.profile('huge')


def test_categories_flag_sets_the_count():
  args = run_lib.parse_args(['--profile', 'smoke', '--source', '/x', '--categories',
                             'cat, The Eiffel Tower'])
  config = run_lib.config_from_args(args)
  assert config.categories == ('cat', 'The Eiffel Tower') and config.num_categories == 2


def test_missing_source_fails_fast_with_the_fix(tmp_path, capsys):
  code = run_lib.main(['--profile', 'smoke', '--source', str(tmp_path / 'absent'),
                       '--output-dir', str(tmp_path / 'out')])
  assert code == 1
  err = capsys.readouterr().err
  assert 'absent: no such folder' in err and 'QUICKDRAW_SOURCE' in err
  assert not os.path.exists(tmp_path / 'out' / 'metadata')


def _record(message, pathname, level=logging.INFO):
  return logging.LogRecord('absl', level, pathname, 1, message, None, None)


def test_console_shows_progress_and_errors_but_not_library_chatter():
  progress = run_lib.ProgressFilter()
  project_file = os.path.join(ROOT, 'models', 'trainer.py')
  library_file = os.path.join(ROOT, '.venv', 'lib', 'python3.10', 'site-packages', 'tfx', 'x.py')
  assert progress.filter(_record('Component Trainer.sknet is running.', library_file))
  assert progress.filter(_record('sknet epoch 1/3: loss 1.0', project_file))
  assert progress.filter(_record('Execution 3 failed.', library_file, logging.ERROR))
  assert not progress.filter(_record('Running launcher for node_info {', library_file))
  assert not progress.filter(_record('Component X is running. (and more)', library_file))


def test_component_end_lines_carry_the_elapsed_time():
  progress = run_lib.ProgressFilter()
  library_file = os.path.join(ROOT, '.venv', 'lib', 'python3.10', 'site-packages', 'tfx', 'x.py')
  start = _record('Component Trainer.sknet is running.', library_file)
  end = _record('Component Trainer.sknet is finished.', library_file)
  end.created = start.created + 42.4
  assert progress.filter(start) and progress.filter(end)
  assert end.getMessage() == 'Component Trainer.sknet is finished. (42 s)'


def test_entry_point_subcommands_and_exit_codes(tmp_path, capsys):
  from pipeline import cli
  with pytest.raises(SystemExit) as help_exit:
    cli.main(['--help'])
  assert help_exit.value.code == 0 and 'run' in capsys.readouterr().out
  with pytest.raises(SystemExit) as usage_exit:
    cli.main(['no-such-command'])
  assert usage_exit.value.code == 2
  assert cli.main(['run', '--profile', 'smoke', '--source', str(tmp_path / 'absent'),
                   '--output-dir', str(tmp_path / 'out')]) == 1


def test_yaml_overrides_a_profile_and_flags_override_the_file(tmp_path):
  settings = tmp_path / 'settings.yaml'
  settings.write_text('profile: smoke\nseed: 7\nmin_map: 1\ncategories: [cat, The Eiffel Tower]\n'
                      'training:\n  skresnet: {epochs: 4, learning_rate: 0.001}\n')
  config = run_lib.config_from_args(run_lib.parse_args(['--config', str(settings)]))
  assert (config.profile, config.seed, config.min_map) == ('smoke', 7, 1.0)
  assert config.categories == ('cat', 'The Eiffel Tower') and config.num_categories == 2
  assert config.training['skresnet'].epochs == 4
  assert config.training['skresnet'].learning_rate == 0.001
  assert config.training['sknet'] == config_lib.PROFILES['smoke'].training['sknet']
  flagged = run_lib.config_from_args(run_lib.parse_args(
      ['--config', str(settings), '--seed', '9', '--profile', 'default']))
  assert (flagged.profile, flagged.seed, flagged.min_map) == ('default', 9, 1.0)


def test_change_thresholds_come_from_settings():
  config = config_lib.with_overrides(config_lib.profile('smoke'),
                                     {'max_accuracy_drop': 0, 'max_map_drop': 0.02})
  assert (config.max_accuracy_drop, config.max_map_drop) == (0.0, 0.02)
  assert isinstance(config.max_accuracy_drop, float)
  assert config_lib.profile('smoke').max_map_drop is None  # No baseline in the smoke profile.


@pytest.mark.parametrize('text, message', [
    ('epochs: 3\n', "unknown setting 'epochs'"),
    ('training:\n  resnet50: {epochs: 1}\n', "unknown model 'resnet50'"),
    ('training:\n  sknet: {epoch: 1}\n', "training.sknet: unknown settings ['epoch']"),
    ('seed: seven\n', "seed: expected int, got 'seven'"),
    ('enable_cache: 1\n', 'enable_cache: expected true or false'),
    ('seed: 1\n  bad: [\n', 'settings.yaml:2: not valid YAML'),
    ('- a list\n', 'expected a mapping'),
    ('max_map_drop: lots\n', "max_map_drop: expected float, got 'lots'"),
    ('max_accuracy_drop: 2\n', 'max_accuracy_drop: expected null or a number from 0 to 1'),
])
def test_bad_yaml_is_a_usage_error_naming_file_and_key(tmp_path, capsys, text, message):
  settings = tmp_path / 'settings.yaml'
  settings.write_text(text)
  from pipeline import cli
  assert cli.main(['run', '--config', str(settings), '--output-dir', str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert message in err and str(settings) in err
  assert not os.path.exists(tmp_path / 'metadata')


def test_quiet_console_shows_warnings_only(tmp_path):
  root = logging.getLogger()
  saved = root.handlers[:]
  try:
    run_lib._log_to_file(str(tmp_path / 'log' / 'run.log'), verbose=False, quiet=True)
    console = root.handlers[1]
    assert console.level == logging.WARNING and not console.filters
  finally:
    root.handlers = saved
