"""Local cache for category files read over HTTPS (the public Quick, Draw! bucket).

A download goes to `<name>.part` and resumes from there with an HTTP Range request; it is
renamed into place only once its size matches the size the server announced (Content-Length,
or the total of a Content-Range when resuming). Progress is shown by common/progress.py.
"""
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from typing import Optional

from absl import logging

from common import progress

CACHE_DIR = os.environ.get(
    'QUICKDRAW_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'quickdraw-tfx'))
_CHUNK = 1 << 20


class NotFoundError(OSError):
  """The server answered 404: the file is not there (another suffix may be)."""


def fetch(url: str, cache_dir: Optional[str] = None, timeout: float = 60.0) -> str:
  """The local path of `url`'s content, downloading (or resuming) it when not yet cached."""
  cache_dir = cache_dir or CACHE_DIR
  name = hashlib.sha256(url.encode()).hexdigest()[:16] + '-' + os.path.basename(url)
  path = os.path.join(cache_dir, name)
  if os.path.exists(path):
    return path
  os.makedirs(cache_dir, exist_ok=True)
  partial = path + '.part'
  done = os.path.getsize(partial) if os.path.exists(partial) else 0
  request = urllib.request.Request(url, headers={'Range': f'bytes={done}-'} if done else {})
  try:
    response = urllib.request.urlopen(request, timeout=timeout)
  except urllib.error.HTTPError as e:
    if e.code == 404:
      raise NotFoundError(f'{url}: not found at the server (HTTP 404).') from e
    raise OSError(f'{url}: cannot download (HTTP {e.code} {e.reason}). Check the address, or '
                  'set QUICKDRAW_SOURCE to a local copy of the files.') from e
  except (urllib.error.URLError, OSError) as e:
    raise OSError(f'{url}: cannot download ({e}). Check the address and the network, or set '
                  'QUICKDRAW_SOURCE to a local copy of the simplified files.') from e
  with response:
    if done and response.status != 206:
      done = 0  # The server ignored the Range header: start over.
    total = _announced_size(response, done)
    logging.info('Downloading %s (%s bytes%s) to %s', url, total or 'unknown',
                 f', resuming at {done}' if done else '', path)
    shown = progress.Progress(total - done if total is not None else None,
                              f'Downloading {os.path.basename(url)}', 'B', unit_scale=True)
    with shown, open(partial, 'ab' if done else 'wb') as out:
      while True:
        try:
          chunk = response.read(_CHUNK)
        except http.client.IncompleteRead as e:
          out.write(e.partial)  # The connection ended early: keep what came, to resume.
          break
        if not chunk:
          break
        out.write(chunk)
        shown.update(len(chunk))
  size = os.path.getsize(partial)
  logging.info('Downloaded %s: %d of %s bytes', os.path.basename(url), size, total or 'unknown')
  if total is not None and size != total:
    raise OSError(f'{url}: downloaded {size} of {total} bytes (the size the server announced); '
                  'run again to resume.')
  os.replace(partial, path)
  return path


def _announced_size(response, done: int) -> Optional[int]:
  """The whole file's size: Content-Range's total when resuming, else Content-Length."""
  content_range = response.headers.get('Content-Range', '')
  if done and content_range.rpartition('/')[2].isdigit():
    return int(content_range.rpartition('/')[2])
  length = response.headers.get('Content-Length')
  return done + int(length) if length is not None else None
