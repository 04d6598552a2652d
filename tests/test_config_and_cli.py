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
