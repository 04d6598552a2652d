"""Progress of long work (sampling, rendering, epochs, embedding) that suits where it is shown.

On a terminal: a tqdm bar on stderr. Elsewhere (CI logs, the run's log file, Beam workers):
a log line every `log_every` seconds and at the end, so logs stay readable. QUICKDRAW_PROGRESS
(`bar`, `log` or `off`; set by `quickdraw-tfx run --quiet` to `off`) overrides the choice.
"""
import logging
import os
import sys
import time
from typing import Optional

ENV = 'QUICKDRAW_PROGRESS'


def mode() -> str:
  chosen = os.environ.get(ENV, '')
  if chosen in ('bar', 'log', 'off'):
    return chosen
  return 'bar' if sys.stderr.isatty() else 'log'


class Progress:
  """Counts units of work: `with Progress(total, 'sampling arm', 'drawings') as p: p.update(n)`.

  `rate` in the postfix (units per second) is what a person watching wants to see."""

  def __init__(self, total: Optional[int], description: str, unit: str = 'items',
               log_every: float = 30.0):
    self.total, self.description, self.unit = total, description, unit
    self.count, self.log_every = 0, log_every
    self._start = self._logged = time.time()
    self._mode = mode()
    self._bar = None
    self._postfix = ''
    if self._mode == 'bar':
      import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm.tqdm(total=total, desc=description, unit=f' {unit}', leave=False,
                            dynamic_ncols=True, file=sys.stderr)

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

  def _line(self) -> str:
    of = f'/{self.total}' if self.total else ''
    extra = f', {self._postfix}' if self._postfix else ''
    return (f'{self.description}: {self.count}{of} {self.unit}, {self.rate:.1f} {self.unit}/s'
            f'{extra}')

  def __enter__(self) -> 'Progress':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
