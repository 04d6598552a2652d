"""Local cache for category files read over HTTPS (the public Quick, Draw! bucket).

A download goes to `<name>.part` and resumes from there with an HTTP Range request; it is
renamed into place only once its size matches the server's Content-Length.
"""
import hashlib
import os
import urllib.error
import urllib.request
from typing import Optional

from absl import logging

CACHE_DIR = os.environ.get(
    'QUICKDRAW_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'quickdraw-tfx'))
_CHUNK = 1 << 20


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
  except (urllib.error.URLError, OSError) as e:
    raise OSError(f'{url}: cannot download ({e}). Check the address and the network, or set '
                  'QUICKDRAW_SOURCE to a local copy of the simplified files.') from e
  with response:
    if done and response.status != 206:
      done = 0  # The server ignored the Range header: start over.
    length = response.headers.get('Content-Length')
    total = done + int(length) if length is not None else None
    logging.info('Downloading %s (%s bytes) to %s', url, total or 'unknown', path)
    with open(partial, 'ab' if done else 'wb') as out:
      while True:
        chunk = response.read(_CHUNK)
        if not chunk:
          break
        out.write(chunk)
  size = os.path.getsize(partial)
  if total is not None and size != total:
    raise OSError(f'{url}: downloaded {size} of {total} bytes; run again to resume.')
  os.replace(partial, path)
  return path
