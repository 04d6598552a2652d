"""Progress shown as a bar on a terminal, as periodic log lines elsewhere, or not at all."""
import logging

from common import progress


def test_log_mode_writes_lines_with_count_total_and_rate(monkeypatch, caplog):
  monkeypatch.setenv(progress.ENV, 'log')
  caplog.set_level(logging.INFO)
  with progress.Progress(10, 'sampling arm', 'drawings', log_every=0) as p:
    p.update(4)
    p.update(6, postfix='3 duplicates')
  lines = [r.getMessage() for r in caplog.records]
  assert lines[0].startswith('sampling arm: 4/10 drawings, ')
  assert lines[1].startswith('sampling arm: 10/10 drawings, ') and lines[1].endswith(
      'drawings/s, 3 duplicates')
  assert p.count == 10 and p.rate > 0


def test_off_mode_is_silent_and_bar_mode_draws_on_stderr(monkeypatch, caplog, capsys):
  monkeypatch.setenv(progress.ENV, 'off')
  caplog.set_level(logging.INFO)
  with progress.Progress(3, 'x', log_every=0) as p:
    p.update(3)
  assert not caplog.records and capsys.readouterr().err == ''
  monkeypatch.setenv(progress.ENV, 'bar')
  with progress.Progress(3, 'embedding test split', 'drawings') as p:
    p.update(3)
  assert 'embedding test split' in capsys.readouterr().err
  assert not caplog.records


def test_mode_follows_the_terminal_unless_told(monkeypatch):
  monkeypatch.delenv(progress.ENV, raising=False)
  monkeypatch.setattr('sys.stderr.isatty', lambda: False)
  assert progress.mode() == 'log'
  monkeypatch.setattr('sys.stderr.isatty', lambda: True)
  assert progress.mode() == 'bar'
  monkeypatch.setenv(progress.ENV, 'off')
  assert progress.mode() == 'off'


def test_unit_scale_shows_large_counts_with_si_prefixes(monkeypatch, caplog):
  monkeypatch.setenv(progress.ENV, 'log')
  caplog.set_level(logging.INFO)
  with progress.Progress(2_000_000, 'Downloading cat.ndjson', 'B', log_every=0,
                         unit_scale=True) as p:
    p.update(1_500_000)
  assert caplog.messages[0].startswith('Downloading cat.ndjson: 1.50M/2.00M B, ')
  assert caplog.messages[0].endswith('B/s')
