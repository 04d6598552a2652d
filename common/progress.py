"""Progress of long work (downloads, sampling, rendering, epochs, embedding, retrieval) shown
the way that suits where it is shown; the project's one progress mechanism.

On a terminal: a tqdm bar on stderr. Elsewhere (CI logs, the run's log file, Beam workers):
a log line at most every `log_every` seconds, so logs stay readable. QUICKDRAW_PROGRESS
(`bar`, `log` or `off`; set by `quickdraw-tfx run --quiet` to `off`) overrides the choice.
"""
import logging
import os
import sys
import time
from typing import Optional

import tqdm

ENV = 'QUICKDRAW_PROGRESS'


def mode() -> str:
  chosen = os.environ.get(ENV, '')
  if chosen in ('bar', 'log', 'off'):
    return chosen
  return 'bar' if sys.stderr.isatty() else 'log'


class Progress:
  """Counts units of work: `with Progress(total, 'sampling arm', 'drawings') as p: p.update(n)`.

  `rate` in the postfix (units per second) is what a person watching wants to see.
  `unit_scale` shows large counts with SI prefixes (12.6M bytes)."""

  def __init__(self, total: Optional[int], description: str, unit: str = 'items',
               log_every: float = 30.0, unit_scale: bool = False):
    self.total, self.description, self.unit = total, description, unit
    self.count, self.log_every, self.unit_scale = 0, log_every, unit_scale
    self._start = self._logged = time.time()
    self._mode = mode()
    self._bar = None
    self._postfix = ''
    if self._mode == 'bar':
      self._bar = tqdm.tqdm(total=total, desc=description, unit=f' {unit}', leave=False,
                            dynamic_ncols=True, file=sys.stderr, unit_scale=unit_scale)

  @property
  def rate(self) -> float:
    return self.count / max(time.time() - self._start, 1e-9)

  def update(self, n: int = 1, postfix: str = '') -> None:
    self.count += n
    self._postfix = postfix or self._postfix
    if self._bar is not None:
      self._bar.update(n)
      if postfix:
        self._bar.set_postfix_str(postfix, refresh=False)
    elif self._mode == 'log' and time.time() - self._logged >= self.log_every:
      self._logged = time.time()
      logging.info('%s', self._line())

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def _amount(self, value: float, digits: int = 0) -> str:
    return tqdm.tqdm.format_sizeof(value) if self.unit_scale else f'{value:.{digits}f}'

  def _line(self) -> str:
    of = f'/{self._amount(self.total)}' if self.total else ''
    extra = f', {self._postfix}' if self._postfix else ''
    return (f'{self.description}: {self._amount(self.count)}{of} {self.unit}, '
            f'{self._amount(self.rate, 1)} {self.unit}/s{extra}')

  def __enter__(self) -> 'Progress':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
