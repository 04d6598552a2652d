"""The model registry: its layout, atomic publishing of a version, and the reader API.

  <registry>/<model>/<version>/        a numeric version (TF Serving's layout), never overwritten
      saved_model.pb, variables/, assets/, assets.extra/categories.txt    the SavedModel
      model_card.json, model_card.md   metrics, categories, data, training, lineage
      gallery.npz                      the search gallery: embeddings, categories, ids, PNGs
  <registry>/<model>/.tmp-<version>-<nonce>/   a push in progress (or one that crashed)

A push fills a temporary folder and renames it to its version number only when complete.
Readers (and TF Serving) see numeric names only, so a crash mid-push leaves nothing they
pick up. On a local filesystem the rename is atomic; on object stores (gs://) a folder
rename is a copy, so readers should also require `model_card.json`, which is written last.
"""
import dataclasses
import io
import json
import os
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

MODEL_CARD_FILE = 'model_card.json'
MODEL_CARD_MARKDOWN = 'model_card.md'
GALLERY_FILE = 'gallery.npz'
CATEGORIES_FILE = os.path.join('assets.extra', 'categories.txt')
TEMP_PREFIX = '.tmp-'
LATEST = 'latest'


class RegistryError(LookupError):
  """A model or version that is not in the registry; the message lists what is."""


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Lazy: keeps --help fast.
  return tf.io.gfile


def is_version_name(name: str) -> bool:
  return name.isdigit()


def version_numbers(model_dir: str) -> List[int]:
  """Published versions of one model, ascending; temporary and other folders are ignored."""
  gfile = _gfile()
  if not gfile.isdir(model_dir):
    return []
  names = [name.rstrip('/') for name in gfile.listdir(model_dir)]
  return sorted(int(name) for name in names if is_version_name(name)
                and gfile.exists(os.path.join(model_dir, name, MODEL_CARD_FILE)))


def next_version(model_dir: str, now: Optional[float] = None) -> int:
  """The Unix time of the push (as TFX's Pusher does), but always above every existing name."""
  gfile = _gfile()
  taken = [int(n.rstrip('/')) for n in (gfile.listdir(model_dir) if gfile.isdir(model_dir) else [])
           if is_version_name(n.rstrip('/'))]
  return max([int(now if now is not None else time.time())] + [v + 1 for v in taken])


def _rename(source: str, destination: str) -> None:
  """Moves a complete staging folder to its version name; refuses to replace anything."""
  if '://' not in destination:
    # os.rename replaces an *empty* destination folder silently; a version never does.
    if os.path.lexists(destination):
      raise FileExistsError(f'{destination}: version already exists; versions are never '
                            'overwritten')
    os.rename(source, destination)
  else:
    _gfile().rename(source, destination, overwrite=False)


def publish(model_dir: str, stage: Callable[[str, int], None],
            now: Optional[float] = None) -> Tuple[int, str]:
  """Pushes one version: `stage(folder, version)` fills a temporary folder, then it is renamed.

  If `stage` or the rename fails, the temporary folder is removed and the error raised; the
  registry is as before. Returns (version, path of the published folder).
  """
  gfile = _gfile()
  gfile.makedirs(model_dir)
  version = next_version(model_dir, now)
  staging = os.path.join(model_dir, f'{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}')
  destination = os.path.join(model_dir, str(version))
  try:
    gfile.makedirs(staging)
    stage(staging, version)
    _rename(staging, destination)
  except BaseException:
    if gfile.exists(staging):
      gfile.rmtree(staging)
    raise
  return version, destination


@dataclasses.dataclass
class ModelVersion:
  """One published version: where it is and its model card."""
  model: str
  version: int
  path: str
  card: Dict[str, Any]

  @property
  def headline_metrics(self) -> Dict[str, float]:
    return dict(self.card.get('metrics') or {})


def read_card(version_dir: str) -> Dict[str, Any]:
  with _gfile().GFile(os.path.join(version_dir, MODEL_CARD_FILE)) as f:
    return json.load(f)


def read_card_markdown(version_dir: str) -> str:
  with _gfile().GFile(os.path.join(version_dir, MODEL_CARD_MARKDOWN)) as f:
    return f.read()


def list_models(registry: str) -> List[str]:
  """Names of models with at least one published version."""
  gfile = _gfile()
  if not gfile.isdir(registry):
    return []
  names = sorted(name.rstrip('/') for name in gfile.listdir(registry))
  return [name for name in names if not name.startswith('.')
          and version_numbers(os.path.join(registry, name))]


def list_versions(registry: str, model: str) -> List[ModelVersion]:
  """Every published version of `model`, oldest first, with its model card."""
  model_dir = os.path.join(registry, model)
  return [ModelVersion(model, v, os.path.join(model_dir, str(v)),
                       read_card(os.path.join(model_dir, str(v))))
          for v in version_numbers(model_dir)]


def resolve(registry: str, model: str, version: Union[str, int] = LATEST) -> ModelVersion:
  """`latest` (the newest pushed, i.e. blessed, version) or the given version number."""
  models = list_models(registry)
  if model not in models:
    raise RegistryError(
        f'{registry}: no model {model!r}; models with pushed versions: '
        f'{", ".join(models) or "none (run the pipeline first: quickdraw-tfx run)"}')
  model_dir = os.path.join(registry, model)
  versions = version_numbers(model_dir)
  if str(version) == LATEST:
    chosen = versions[-1]
  elif str(version).isdigit() and int(version) in versions:
    chosen = int(version)
  else:
    raise RegistryError(f'{model_dir}: no version {version!r}; pushed versions: '
                        f'{", ".join(map(str, versions))} (or "latest")')
  path = os.path.join(model_dir, str(chosen))
  return ModelVersion(model, chosen, path, read_card(path))


def load_model(model_version: ModelVersion):
  """The SavedModel of a version (signatures serving_default, embed, serving_png)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.saved_model.load(model_version.path)


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
  with _gfile().GFile(path, 'wb') as f:
    f.write(buffer.getvalue())


def read_gallery(path: str) -> Gallery:
  with _gfile().GFile(path, 'rb') as f:
    data = np.load(io.BytesIO(f.read()))
  offsets, blob = data['png_offsets'], data['png_data'].tobytes()
  return Gallery(embedding=data['embedding'], category=data['category'], id=data['id'],
                 split=data['split'],
                 png=[blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)])


def load_gallery(model_version: ModelVersion) -> Gallery:
  path = os.path.join(model_version.path, GALLERY_FILE)
  if not _gfile().exists(path):
    raise RegistryError(f'{model_version.path}: no {GALLERY_FILE}; this version was pushed '
                        'without a search gallery (wire the Pusher\'s embeddings and examples)')
  return read_gallery(path)


def summary_rows(registry: str, models: Sequence[str] = ()) -> List[Dict[str, Any]]:
  """One row per version (model, version, pushed_at, headline metrics, gallery size)."""
  rows = []
  for model in models or list_models(registry):
    for mv in list_versions(registry, model):
      rows.append(dict(model=model, version=mv.version, pushed_at=mv.card.get('pushed_at'),
                       gallery=(mv.card.get('gallery') or {}).get('size'),
                       **mv.headline_metrics))
  return rows
