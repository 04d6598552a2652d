"""The model registry's reader API: list models and versions, resolve `latest` or a version,
load a SavedModel, its card and its search gallery.

The layout, version names and publishing are domain/registry_store.py's. Asking for a
version that is neither a version number nor "latest" raises BadVersionError.

Reading: a version is valid when its model_card.json is a readable JSON object, saved_model.pb
exists and, if the card names a gallery, gallery.npz exists, and when what the server loads
loads: the card's render settings are usable, saved_model.pb parses with the `serving_png`
signature, variables/ has its index, and gallery.npz reads as a gallery. Those checks run once
per version folder and process (a published version never changes). A version whose SavedModel
or gallery then fails to load (load_model, load_gallery) is remembered as damaged too, so it
is neither retried nor picked again. "latest" is the newest valid version; the others are
skipped with a logged reason (summary_rows reports them). Asking for a damaged version raises
DamagedVersionError. Messages and rows name models and versions, never the registry's path
(ModelVersion.path is for the server's own use), and never repeat a path-like name asked for.
"""
import dataclasses
import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from domain import registry_store
# The layout, the card and the gallery are the registry's format, shared with the Pusher; readers
# use them through this module too.
from domain.registry_store import (  # noqa: F401
    CATEGORIES_FILE, GALLERY_FILE, MAX_VERSION, MODEL_CARD_FILE, MODEL_CARD_MARKDOWN,
    SAVED_MODEL_FILE, TEMP_PREFIX, Gallery, is_version_name, read_card, read_gallery,
    version_folders, version_numbers, write_gallery)

LATEST = 'latest'
SEARCH_SIGNATURE = 'serving_png'  # What the search server calls.
VARIABLES_INDEX = os.path.join('variables', 'variables.index')
# Render sizes a card may give (the query rendering's bounds).
MIN_RENDER_SIZE, MAX_RENDER_SIZE = 16, 4096

_log = logging.getLogger(__name__)
_logged_skips = set()
# Version folder -> why it cannot be loaded ('' when it can): checked once per process.
_verdicts: Dict[str, str] = {}
T = TypeVar('T')


class RegistryError(LookupError):
  """A model or version that is not in the registry; the message lists what is (HTTP 404)."""


class BadVersionError(RegistryError, ValueError):
  """A requested version that is neither "latest" nor a canonical version number (HTTP 400)."""


class DamagedVersionError(RegistryError):
  """A version folder that exists but cannot be used; the message says why (HTTP 404)."""

  def __init__(self, message: str, reason: str = ''):
    super().__init__(message)
    self.reason = reason or message


def shown(value: Any, limit: int = 40) -> str:
  """repr() of a client's value, cut short: a 5,000-digit version is not echoed whole. A
  path-like value is not repeated at all: the server hides its own paths in messages, so an
  echo would tell a right guess of one from a wrong one."""
  if isinstance(value, str) and ('/' in value or '\\' in value):
    return '(a path, not repeated here)'
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + '...'


def parse_version(version: Union[str, int]) -> Union[int, str]:
  """LATEST or the version number asked for; BadVersionError for anything else."""
  if isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= MAX_VERSION:
    return version
  if version == LATEST:
    return LATEST
  if is_version_name(version):
    return int(version)
  raise BadVersionError(f'version {shown(version)} is neither "latest" nor a version number '
                        '(1 to 18 digits, no leading zero)')


def _is_plain_name(name: Any) -> bool:
  """A model name that stays inside the registry folder."""
  return (isinstance(name, str) and bool(name) and not name.startswith('.')
          and '/' not in name and '\\' not in name)


def _listing(versions: Sequence[int], most: int = 10) -> str:
  if not versions:
    return 'none'
  shown = ', '.join(map(str, versions[-most:]))
  return shown if len(versions) <= most else f'{shown} (and {len(versions) - most} older)'


# Reading.

@dataclasses.dataclass
class ModelVersion:
  """One valid version: its model card, and where it is (`path`: not for clients)."""
  model: str
  version: int
  path: str
  card: Dict[str, Any]

  @property
  def headline_metrics(self) -> Dict[str, float]:
    metrics = self.card.get('metrics')
    if not isinstance(metrics, dict):
      return {}
    return {key: value for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A version folder that readers do not use, and why (no paths: fit for clients)."""
  model: str
  version: int
  reason: str


def read_card_markdown(version_dir: str) -> str:
  with registry_store.tf_gfile().GFile(os.path.join(version_dir, MODEL_CARD_MARKDOWN)) as f:
    return f.read()


def card_markdown(model_version: ModelVersion) -> Optional[str]:
  """model_card.md of a version, or None when it is missing or unreadable."""
  try:
    return read_card_markdown(model_version.path)
  except (registry_store.tf_op_error(), OSError, ValueError) as e:
    _log.warning('%s version %d: %s unreadable: %s', model_version.model, model_version.version,
                 MODEL_CARD_MARKDOWN, e)
    return None


def _load_card(version_dir: str) -> Tuple[Optional[Dict[str, Any]], str]:
  """(card, '') or (None, why it cannot be read)."""
  gfile = registry_store.tf_gfile()
  path = os.path.join(version_dir, MODEL_CARD_FILE)
  if not gfile.exists(path):
    return None, f'no {MODEL_CARD_FILE} (a push in progress, or an incomplete copy)'
  try:
    with gfile.GFile(path, 'rb') as f:
      data = f.read()
  except (registry_store.tf_op_error(), OSError) as e:
    return None, f'{MODEL_CARD_FILE} is unreadable ({type(e).__name__})'
  try:
    card = json.loads(data)
  except json.JSONDecodeError as e:
    return None, (f'{MODEL_CARD_FILE} is not valid JSON (line {e.lineno}, column {e.colno}: '
                  f'{e.msg})')
  except (ValueError, RecursionError) as e:  # Not UTF-8 text, or nested too deep.
    return None, f'{MODEL_CARD_FILE} is not readable JSON ({type(e).__name__})'
  if not isinstance(card, dict):
    return None, f'{MODEL_CARD_FILE} is not a JSON object'
  return card, ''


def _check(model: str, model_dir: str, version: int,
           need_gallery: bool) -> Tuple[Optional[ModelVersion], str]:
  """(the version, '') if readers can use it, else (None, why not)."""
  gfile = registry_store.tf_gfile()
  path = os.path.join(model_dir, str(version))
  card, reason = _load_card(path)
  if card is None:
    return None, reason
  if not gfile.exists(os.path.join(path, SAVED_MODEL_FILE)):
    return None, f'no {SAVED_MODEL_FILE}'
  gallery = card.get('gallery')
  named = isinstance(gallery, dict) and bool(gallery.get('file'))
  if named or need_gallery:
    if not gfile.exists(os.path.join(path, GALLERY_FILE)):
      return None, (f'no {GALLERY_FILE} (its card names one)' if named else
                    f'no {GALLERY_FILE}: pushed without a search gallery')
  found = ModelVersion(model, version, path, card)
  if path not in _verdicts:
    _verdicts[path] = _load_problem(found)
  return (None, _verdicts[path]) if _verdicts[path] else (found, '')


def render_settings(card: Dict[str, Any]) -> Tuple[int, int]:
  """(render size, stroke width) the model's training drawings were rendered with."""
  data = card.get('data') or {}
  size = data.get('render_size', 256) if isinstance(data, dict) else None
  width = data.get('stroke_width', 3) if isinstance(data, dict) else None
  # `type() is int` because True is an int.
  if not (type(size) is int and MIN_RENDER_SIZE <= size <= MAX_RENDER_SIZE
          and type(width) is int and 1 <= width <= size // 4):
    reason = (f'{MODEL_CARD_FILE} has no usable render settings (data.render_size '
              f'{shown(size)}, data.stroke_width {shown(width)})')
    raise DamagedVersionError(
        f'model {card.get("model_name", "?")!r} version {card.get("version", "?")}: {reason}',
        reason)
  return size, width


def _load_problem(version: ModelVersion) -> str:
  """Why what the server loads from a version would fail to load, or ''; reads the files."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  gfile = registry_store.tf_gfile()
  try:
    render_settings(version.card)
  except DamagedVersionError as e:
    return e.reason
  saved_model = saved_model_pb2.SavedModel()
  try:
    with gfile.GFile(os.path.join(version.path, SAVED_MODEL_FILE), 'rb') as f:
      data = f.read()
    # The C++ parser stops at some damage with a warning, having read part of the bytes.
    if saved_model.ParseFromString(data) != len(data):
      raise message.DecodeError('not all of it parses')
  except (message.DecodeError, registry_store.tf_op_error(), OSError) as e:
    return f'{SAVED_MODEL_FILE} cannot be read as a SavedModel ({type(e).__name__})'
  if not any(SEARCH_SIGNATURE in graph.signature_def for graph in saved_model.meta_graphs):
    return f'{SAVED_MODEL_FILE} has no {SEARCH_SIGNATURE} signature'
  if not gfile.exists(os.path.join(version.path, VARIABLES_INDEX)):
    return f'no {VARIABLES_INDEX}: the SavedModel\'s variables are missing'
  if gfile.exists(os.path.join(version.path, GALLERY_FILE)):
    try:
      read_gallery(os.path.join(version.path, GALLERY_FILE))
    except Exception as e:  # pylint: disable=broad-except  # zip, npz, I/O and shape errors.
      return f'{GALLERY_FILE} is unreadable ({type(e).__name__})'
  return ''


def _remember(version: ModelVersion, error: Exception, what: str) -> DamagedVersionError:
  """The error for a version that failed to load, now remembered as damaged."""
  reason = f'{what} ({type(error).__name__})'
  _verdicts[version.path] = reason
  # One line, no traceback: TensorFlow's message (it names the file) is the detail needed.
  first_line = (str(error).strip().splitlines() or [''])[0][:300]
  _log.warning('registry: %s version %d in %s cannot be used from now on: %s: %s',
               version.model, version.version, version.path, reason, first_line)
  return DamagedVersionError(f'model {version.model!r} version {version.version}: {reason}',
                             reason)


def _skip(model_dir: str, skipped: Skipped) -> None:
  """Logs why a version is skipped, once per process (readers scan on every request)."""
  key = (model_dir, skipped.version, skipped.reason)
  if key not in _logged_skips:
    _logged_skips.add(key)
    _log.warning('registry: skipping %s version %d in %s: %s', skipped.model, skipped.version,
                 model_dir, skipped.reason)


def scan(registry: str, model: str,
         need_gallery: bool = False) -> Tuple[List[ModelVersion], List[Skipped]]:
  """(valid versions, skipped version folders) of `model`, oldest first."""
  if not _is_plain_name(model):
    return [], []
  model_dir = os.path.join(registry, model)
  valid, skipped = [], []
  for version in version_folders(model_dir):
    found, reason = _check(model, model_dir, version, need_gallery)
    if found is not None:
      valid.append(found)
    else:
      skipped.append(Skipped(model, version, reason))
      _skip(model_dir, skipped[-1])
  return valid, skipped


def list_models(registry: str) -> List[str]:
  """Names of models with at least one version that has a model card."""
  return [name for name in sorted(registry_store.folder_names(registry))
          if _is_plain_name(name) and version_numbers(os.path.join(registry, name))]


def list_versions(registry: str, model: str, need_gallery: bool = False) -> List[ModelVersion]:
  """Every valid version of `model`, oldest first, with its model card."""
  return scan(registry, model, need_gallery)[0]


def resolve(registry: str, model: str, version: Union[str, int] = LATEST,
            need_gallery: bool = False) -> ModelVersion:
  """`latest` (the newest valid version) or the given version number.

  Raises BadVersionError for a version that is not "latest" or a number, RegistryError for an
  unknown model or version, DamagedVersionError for a version that exists but cannot be used
  (or a model with no valid version). need_gallery: versions without a gallery do not count.
  """
  wanted = parse_version(version)
  model_dir = os.path.join(registry, model) if _is_plain_name(model) else None
  folders = (version_folders(model_dir)
             if model_dir and model in registry_store.folder_names(registry) else [])
  gfile = registry_store.tf_gfile()
  # A model is listed once one of its versions has a card (list_models); newest first is cheap.
  if not any(gfile.exists(os.path.join(model_dir, str(v), MODEL_CARD_FILE))
             for v in reversed(folders)):
    raise RegistryError(
        f'no model {shown(model)}; models with pushed versions: '
        f'{", ".join(list_models(registry)) or "none (run the pipeline first: quickdraw-tfx run)"}')
  if wanted == LATEST:
    reasons = []
    for number in reversed(folders):
      found, reason = _check(model, model_dir, number, need_gallery)
      if found is not None:
        return found
      _skip(model_dir, Skipped(model, number, reason))
      reasons.append(f'{number}: {reason}')
    raise DamagedVersionError(f'model {model!r} has no usable version; skipped '
                              f'{"; ".join(reasons[:5])}')
  if wanted not in folders:
    valid = [v.version for v in scan(registry, model, need_gallery)[0]]
    raise RegistryError(f'model {model!r} has no version {str(wanted)!r}; it has '
                        f'{_listing(valid)} (or "latest")')
  found, reason = _check(model, model_dir, wanted, need_gallery)
  if found is None:
    _skip(model_dir, Skipped(model, wanted, reason))
    valid = [v.version for v in scan(registry, model, need_gallery)[0]]
    raise DamagedVersionError(f'model {model!r} version {wanted} cannot be used: {reason}; '
                              f'usable versions: {_listing(valid)}')
  return found


def load_newest(registry: str, model: str, version: Union[str, int],
                load: Callable[[ModelVersion], T], need_gallery: bool = True) -> T:
  """load(the resolved version); for "latest", a version that fails to load (DamagedVersionError)
  is remembered as damaged and the next newest is tried, until one loads or none is left."""
  while True:
    resolved = resolve(registry, model, version, need_gallery)
    try:
      return load(resolved)
    except DamagedVersionError as e:
      if parse_version(version) != LATEST:
        raise
      # Remembered, so resolve() does not pick it again: each pass leaves one version out.
      _verdicts[resolved.path] = _verdicts.get(resolved.path) or e.reason


def summary_rows(registry: str, models: Sequence[str] = ()) -> List[Dict[str, Any]]:
  """One row per version folder, oldest first per model, without paths.

  A valid version: model, version, pushed_at, gallery (size) and the headline metrics. A skipped
  one: model, version and `skipped` (the reason).
  """
  rows = []
  for model in models or list_models(registry):
    valid, skipped = scan(registry, model)
    for mv in sorted(valid + skipped, key=lambda v: v.version):
      if isinstance(mv, Skipped):
        rows.append(dict(model=model, version=mv.version, skipped=mv.reason))
        continue
      pushed_at = mv.card.get('pushed_at')
      gallery = mv.card.get('gallery')
      size = gallery.get('size') if isinstance(gallery, dict) else None
      row = dict(model=model, version=mv.version,
                 pushed_at=pushed_at if isinstance(pushed_at, str) else None,
                 gallery=size if isinstance(size, int) and not isinstance(size, bool) else None)
      row.update((k, v) for k, v in mv.headline_metrics.items() if k not in row)
      rows.append(row)
  return rows


def load_model(model_version: ModelVersion):
  """The SavedModel of a version (signatures serving_default, embed, serving_png)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    return tf.saved_model.load(model_version.path)
  except Exception as e:  # pylint: disable=broad-except  # Many kinds; the log has the detail.
    raise _remember(model_version, e, 'the SavedModel cannot be loaded') from e


# The search gallery.

def load_gallery(model_version: ModelVersion) -> Gallery:
  name = f'model {model_version.model!r} version {model_version.version}'
  path = os.path.join(model_version.path, GALLERY_FILE)
  if not registry_store.tf_gfile().exists(path):
    raise RegistryError(f'{name} has no {GALLERY_FILE}: it was pushed without a search gallery '
                        '(wire the Pusher\'s embeddings and examples)')
  try:
    return read_gallery(path)
  except Exception as e:  # pylint: disable=broad-except  # zip, npz and I/O errors alike.
    raise _remember(model_version, e, f'{GALLERY_FILE} is unreadable') from e
