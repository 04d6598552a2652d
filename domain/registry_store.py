"""The model registry on disk: its layout, version names, the card and gallery files, and
publishing a version. The Pusher writes through this module; serving/registry.py reads.

  <registry>/<model>/<version>/        a version (TF Serving's layout), never overwritten
      saved_model.pb, variables/, assets/, assets.extra/categories.txt    the SavedModel
      model_card.json, model_card.md   metrics, categories, data, training, lineage
      gallery.npz                      the search gallery: embeddings, categories, ids, PNGs
  <registry>/<model>/.tmp-<nonce>/     a push being staged (or one that crashed)

Version names are canonical decimal numbers: ASCII digits, no leading zero, 1 to 18 digits
(so every version fits TF Serving's int64); readers ignore folders with other names ('007',
'²', 'v2').

Publishing stages the model files in a temporary folder, then claims the next version number
with an exclusive operation and, if another push took that number, the one after: two pushes
never share a number and neither fails for it. The files that name the version (model_card.md,
model_card.json) are written only then, model_card.json last of all.

  local folders   the claim is os.mkdir of the version folder; the staged folder, cards
                  included, is renamed onto that empty claim in one atomic step.
  object stores   (gs://, where renaming a folder is a copy, file by file) the claim is a marker
                  object that must be alone in the version folder when listed; the model files
                  are copied in, then model_card.json is written last.

Either way model_card.json never appears before the files it describes, and readers require it.
"""
import dataclasses
import io
import json
import logging
import os
import random
import re
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

# Where a run's Pushers publish: <output_dir>/registry (pipeline/config.py); with the default
# output folder, what `quickdraw-tfx models/search/serve` read unless told otherwise.
REGISTRY_FOLDER = 'registry'
DEFAULT_REGISTRY = os.path.join('outputs', REGISTRY_FOLDER)
MODEL_CARD_FILE = 'model_card.json'
MODEL_CARD_MARKDOWN = 'model_card.md'
GALLERY_FILE = 'gallery.npz'
SAVED_MODEL_FILE = 'saved_model.pb'
CATEGORIES_FILE = os.path.join('assets.extra', 'categories.txt')
TEMP_PREFIX = '.tmp-'
MAX_VERSION = 10**18 - 1  # Versions fit TF Serving's int64.
_VERSION_NAME = re.compile(r'[1-9][0-9]{0,17}')
CLAIM_PREFIX = '.claim-'
_MAX_CLAIMS = 100

_log = logging.getLogger(__name__)


def tf_gfile():
  """tf.io.gfile (local folders and gs:// alike), imported on first use: keeps --help fast."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Lazy: keeps --help fast.
  return tf.io.gfile


def tf_op_error():
  """The error tf.io.gfile raises, imported on first use."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.errors.OpError


def is_version_name(name: Any) -> bool:
  """'7' and '1796024836' are versions; '007', '²', '+7', '7 ' and 19 digits are not."""
  return isinstance(name, str) and _VERSION_NAME.fullmatch(name) is not None


def folder_names(folder: str) -> List[str]:
  """Entry names of `folder` (none when it does not exist), without trailing slashes."""
  gfile = tf_gfile()
  if not gfile.isdir(folder):
    return []
  return [name.rstrip('/') for name in gfile.listdir(folder) if name.rstrip('/')]


def version_folders(model_dir: str) -> List[int]:
  """Every canonical version folder, with or without a card (or complete files), ascending."""
  return sorted(int(name) for name in folder_names(model_dir) if is_version_name(name))


def version_numbers(model_dir: str) -> List[int]:
  """Versions with a model card (not checked), ascending; temporary and other folders are
  ignored, as is a version folder whose card is not written yet."""
  gfile = tf_gfile()
  return [v for v in version_folders(model_dir)
          if gfile.exists(os.path.join(model_dir, str(v), MODEL_CARD_FILE))]


def read_card(version_dir: str) -> Dict[str, Any]:
  with tf_gfile().GFile(os.path.join(version_dir, MODEL_CARD_FILE)) as f:
    return json.load(f)


# The search gallery.

@dataclasses.dataclass
class Gallery:
  """Drawings to search among: one row per drawing, PNG bytes included."""
  embedding: np.ndarray  # (n, d) float32
  category: np.ndarray  # (n,) str
  id: np.ndarray  # (n,) str
  split: np.ndarray  # (n,) str
  png: List[bytes]

  def __len__(self) -> int:
    return len(self.id)


def write_gallery(path: str, gallery: Gallery) -> None:
  """One .npz without pickles: PNGs are concatenated bytes plus offsets."""
  n = len(gallery.id)
  if not (len(gallery.embedding) == len(gallery.category) == len(gallery.split)
          == len(gallery.png) == n):
    raise ValueError('gallery columns differ in length')
  offsets = np.cumsum([0] + [len(png) for png in gallery.png]).astype(np.int64)
  buffer = io.BytesIO()  # np.savez needs a seekable file; GFile (gs://) is not.
  np.savez_compressed(
      buffer, embedding=np.asarray(gallery.embedding, np.float32),
      category=np.asarray(gallery.category, str), id=np.asarray(gallery.id, str),
      split=np.asarray(gallery.split, str),
      png_data=np.frombuffer(b''.join(gallery.png), np.uint8), png_offsets=offsets)
  with tf_gfile().GFile(path, 'wb') as f:
    f.write(buffer.getvalue())


def read_gallery(path: str) -> Gallery:
  with tf_gfile().GFile(path, 'rb') as f:
    with np.load(io.BytesIO(f.read())) as data:  # Each item read once: the npz reads lazily.
      columns = {name: data[name] for name in ('embedding', 'category', 'id', 'split',
                                               'png_offsets', 'png_data')}
  offsets, blob = columns['png_offsets'], columns['png_data'].tobytes()
  rows = len(columns['id'])
  # Checked here so a damaged gallery fails when read, not in the middle of a search.
  if not (columns['embedding'].ndim == 2 and len(offsets) == rows + 1
          and len(columns['embedding']) == len(columns['category']) == len(columns['split'])
          == rows and offsets[0] == 0 and offsets[-1] == len(blob)
          and np.all(np.diff(offsets) >= 0)):
    raise ValueError('the gallery\'s columns do not fit together (rows, embedding shape or '
                     'PNG offsets)')
  return Gallery(embedding=columns['embedding'], category=columns['category'], id=columns['id'],
                 split=columns['split'],
                 png=[blob[offsets[i]:offsets[i + 1]] for i in range(rows)])


# Publishing.

def next_version(model_dir: str, now: Optional[float] = None) -> int:
  """The Unix time of the push (as TFX's Pusher does), but above every version folder."""
  return max([int(time.time() if now is None else now)]
             + [v + 1 for v in version_folders(model_dir)])


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
  gfile = tf_gfile()
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
  gfile = tf_gfile()
  for name in sorted(files, key=lambda n: n == MODEL_CARD_FILE):
    with gfile.GFile(os.path.join(folder, name), 'w') as f:
      f.write(files[name])


def _rename(source: str, destination: str) -> None:
  """Locally: the staged folder replaces the empty claimed folder, in one atomic step."""
  os.rename(source, destination)


def _copy_in(source: str, destination: str, files: Mapping[str, str]) -> None:
  """On object stores: the model files one by one, saved_model.pb after the files it names,
  then the card files (model_card.json last)."""
  gfile = tf_gfile()
  staged = []
  for folder, subfolders, names in gfile.walk(source):
    relative = folder[len(source):].strip('/')
    for name in subfolders:
      gfile.makedirs(os.path.join(destination, relative, name.rstrip('/')))
    staged += [os.path.join(relative, name) for name in names]
  for name in sorted(staged, key=lambda n: (n == SAVED_MODEL_FILE, n)):
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
  gfile = tf_gfile()
  gfile.makedirs(model_dir)
  nonce = uuid.uuid4().hex[:12]
  staging = os.path.join(model_dir, f'{TEMP_PREFIX}{nonce}')
  marker = f'{CLAIM_PREFIX}{nonce}'
  destination = None
  try:
    gfile.makedirs(staging)
    stage(staging)
    version, destination = _claim(model_dir, now, remote, marker)
    files = dict(card_files(version))
    if MODEL_CARD_FILE not in files:
      raise ValueError(f'card_files({version}) gave no {MODEL_CARD_FILE}')
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
    except (tf_op_error(), OSError) as e:
      _log.warning('registry: %s version %d published; tidying up failed: %s', model_dir,
                   version, e)
  return version, destination
