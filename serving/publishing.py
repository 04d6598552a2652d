"""Publishing a version to the model registry (layout and readers: serving/registry.py).

A push stages the model files in a temporary folder (`<model>/.tmp-<nonce>/`), then claims the
next version number with an exclusive operation and, if another push took that number, the one
after: two pushes never share a number and neither fails for it. The files that name the
version (model_card.md, model_card.json) are written only then, model_card.json last of all.

  local folders   the claim is os.mkdir of the version folder; the staged folder, cards
                  included, is renamed onto that empty claim in one atomic step.
  object stores   (gs://, where renaming a folder is a copy, file by file) the claim is a marker
                  object that must be alone in the version folder when listed; the model files
                  are copied in, then model_card.json is written last.

Either way model_card.json never appears before the files it describes, and readers require it.
"""
import logging
import os
import random
import time
import uuid
from typing import Callable, Mapping, Optional, Tuple

from serving import registry

CLAIM_PREFIX = '.claim-'
_MAX_CLAIMS = 100

_log = logging.getLogger(__name__)


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Lazy: keeps --help fast.
  return tf.io.gfile


def _op_error():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.errors.OpError


def next_version(model_dir: str, now: Optional[float] = None) -> int:
  """The Unix time of the push (as TFX's Pusher does), but above every version folder."""
  return max([int(time.time() if now is None else now)]
             + [v + 1 for v in registry.version_folders(model_dir)])


def _claim_local(destination: str, marker: str) -> bool:
  del marker  # A new folder is the claim: os.mkdir fails if the folder exists.
  try:
    os.mkdir(destination)
    return True
  except FileExistsError:
    return False


def _claim_remote(destination: str, marker: str) -> bool:
  """Object stores have no exclusive create here: write a marker, then list. A claim wins only
  if its marker is alone; of two claims, the later one's listing sees the earlier marker (or the
  winner's files once the marker is gone), so at most one wins. A loser removes its marker."""
  gfile = _gfile()
  gfile.makedirs(destination)
  with gfile.GFile(os.path.join(destination, marker), 'w') as f:
    f.write('')
  if [n.rstrip('/') for n in gfile.listdir(destination) if n.rstrip('/')] == [marker]:
    return True
  gfile.remove(os.path.join(destination, marker))
  return False


def _claim(model_dir: str, now: Optional[float], remote: bool, marker: str) -> Tuple[int, str]:
  """(version, folder) of a number no other push has or will get; the next one on conflict."""
  claim = _claim_remote if remote else _claim_local
  for attempt in range(_MAX_CLAIMS):
    version = next_version(model_dir, now)
    destination = os.path.join(model_dir, str(version))
    if claim(destination, marker):
      return version, destination
    _log.info('registry: version %d was taken by another push; trying the next', version)
    if remote:  # Two claims that both lost try again a little apart.
      time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
  raise RuntimeError(f'no version number could be claimed in {_MAX_CLAIMS} attempts')


def _write_files(folder: str, files: Mapping[str, str]) -> None:
  """The card files, model_card.json last: its presence marks a complete version."""
  gfile = _gfile()
  for name in sorted(files, key=lambda n: n == registry.MODEL_CARD_FILE):
    with gfile.GFile(os.path.join(folder, name), 'w') as f:
      f.write(files[name])


def _rename(source: str, destination: str) -> None:
  """Locally: the staged folder replaces the empty claimed folder, in one atomic step."""
  os.rename(source, destination)


def _copy_in(source: str, destination: str, files: Mapping[str, str]) -> None:
  """On object stores: the model files one by one, saved_model.pb after the files it names,
  then the card files (model_card.json last)."""
  gfile = _gfile()
  staged = []
  for folder, subfolders, names in gfile.walk(source):
    relative = folder[len(source):].strip('/')
    for name in subfolders:
      gfile.makedirs(os.path.join(destination, relative, name.rstrip('/')))
    staged += [os.path.join(relative, name) for name in names]
  for name in sorted(staged, key=lambda n: (n == registry.SAVED_MODEL_FILE, n)):
    if name not in files:
      gfile.copy(os.path.join(source, name), os.path.join(destination, name), overwrite=False)
  _write_files(destination, files)


def publish(model_dir: str, stage: Callable[[str], None],
            card_files: Callable[[int], Mapping[str, str]], now: Optional[float] = None,
            remote: Optional[bool] = None) -> Tuple[int, str]:
  """Pushes one version; returns (version, path of the published folder).

  `stage(folder)` writes the model files into a temporary folder; then a version number is
  claimed and `card_files(version)` gives {file name: text} of the files that name the version,
  model_card.json among them, written after everything else. `remote` (default: the path has
  a scheme, like gs://) picks the object-store way of publishing. If anything fails before the
  card is written, the error is raised and readers see the registry as before.
  """
  remote = '://' in model_dir if remote is None else remote
  gfile = _gfile()
  gfile.makedirs(model_dir)
  nonce = uuid.uuid4().hex[:12]
  staging = os.path.join(model_dir, f'{registry.TEMP_PREFIX}{nonce}')
  marker = f'{CLAIM_PREFIX}{nonce}'
  destination = None
  try:
    gfile.makedirs(staging)
    stage(staging)
    version, destination = _claim(model_dir, now, remote, marker)
    files = dict(card_files(version))
    if registry.MODEL_CARD_FILE not in files:
      raise ValueError(f'card_files({version}) gave no {registry.MODEL_CARD_FILE}')
    if remote:
      _copy_in(staging, destination, files)
    else:
      _write_files(staging, files)
      _rename(staging, destination)
  except BaseException:
    if destination is not None and not remote:
      try:
        os.rmdir(destination)  # The empty claim; a published folder is never empty.
      except OSError:
        pass
    # On object stores, files copied under a claimed number stay without a card: readers
    # skip them, and the number is not handed out again.
    if gfile.exists(staging):
      gfile.rmtree(staging)
    raise
  if remote:  # Published: what is left is tidying up, which must not fail the push.
    try:
      gfile.remove(os.path.join(destination, marker))
      gfile.rmtree(staging)
    except (_op_error(), OSError) as e:
      _log.warning('registry: %s version %d published; tidying up failed: %s', model_dir,
                   version, e)
  return version, destination
