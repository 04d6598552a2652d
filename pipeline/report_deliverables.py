"""The report's deliverables: each pushed model (registry path, version, signatures, gallery)
and the three lines of Python that load one and search with it.

Read from the Pushers' outputs (the `pushed_destination` and `pushed_version` properties and
the model card copied into the PushedModel artifact); the code names serving/search.py's API
as it is (`Searcher.from_registry`, `read_queries`, `search`). Paths are shown below the run's
output folder, never as a path of the machine that wrote the report.
"""
import os
from typing import Any, Dict, List, Optional

from pipeline.report_data import ModelResults, RunResults
from pipeline.report_tables import Table

SEARCH_CODE = '''from serving import search
searcher = search.Searcher.from_registry({registry!r}, {model!r}, version={version})
results = searcher.search(search.read_queries('my_sketch.png'), k=10)'''


def shown_path(run: RunResults, path: str) -> str:
  """`path` below the run's output folder when it is there; a remote URI as it is; else its
  last three names (registry/<model>/<version>)."""
  if '://' in path:
    return path
  absolute = os.path.abspath(path)
  if absolute.startswith(run.output_dir + os.sep):
    return os.path.relpath(absolute, run.output_dir)
  return '.../' + '/'.join(os.path.normpath(path).split(os.sep)[-3:])


def _version(model: ModelResults) -> str:
  return model.pushed_version or str(model.card.get('version') or '')


def pushed(run: RunResults) -> List[Dict[str, Any]]:
  """One entry per pushed model: where, which version, its gallery and the search code."""
  entries = []
  for m in run.models:
    if not m.pushed_to:
      continue
    path = shown_path(run, m.pushed_to)
    registry = os.path.dirname(os.path.dirname(path.rstrip('/')))
    version = _version(m)
    gallery = m.card.get('gallery') if isinstance(m.card.get('gallery'), dict) else {}
    entries.append({
        'name': m.name, 'title': m.title, 'path': path, 'version': version,
        'gallery_size': gallery.get('size'), 'gallery_splits': ', '.join(gallery.get('splits')
                                                                         or []),
        'code': SEARCH_CODE.format(registry=registry, model=m.name,
                                   version=int(version) if version.isdigit() else "'latest'"),
    })
  return entries


def signatures(run: RunResults) -> Optional[Table]:
  """The pushed models' serving signatures, their inputs and outputs (the model cards); a
  signature the models share is one row naming them all."""
  rows: Dict[tuple, List[str]] = {}
  for m in run.models:
    described = m.card.get('signatures') if m.pushed_to else None
    if not isinstance(described, dict):
      continue
    for name, spec in sorted(described.items()):
      inputs = '; '.join(f'`{key}`: {kind}' for key, kind in sorted(spec.get('inputs', {})
                                                                     .items()))
      outputs = ', '.join(f'`{o}`' for o in spec.get('outputs', []))
      rows.setdefault((f'`{name}`', inputs, outputs), []).append(f'{m.title} v{_version(m)}')
  if not rows:
    return None
  return Table(['signature', 'inputs', 'outputs', 'in'],
               [list(key) + [', '.join(models)] for key, models in rows.items()])
