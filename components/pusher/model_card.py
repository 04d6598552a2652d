"""The model card of a pushed version: what the Pusher writes beside the SavedModel
(model_card.json and model_card.md): lineage, code version, data manifest, the training run
and the signatures, each read from the artifacts and the exported model."""
import json
import os
import subprocess
from typing import Any, Dict, Optional

from absl import logging
import tensorflow as tf
from tfx import types

from components.example_gen import outputs as example_gen_outputs
from models import architectures
from models import training_outputs

# The project's checkout: its git commit is the pushed code's version.
_PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def training_run(model_folder: str) -> Optional[Dict]:
  path = os.path.join(model_folder, 'assets.extra', training_outputs.TRAINING_RUN_FILE)
  if not tf.io.gfile.exists(path):  # Models exported before the Trainer wrote it.
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def code_version(project_dir: str = _PROJECT_DIR) -> Dict[str, Any]:
  """The git commit of the code that pushed (and whether it had local changes), when known."""
  def git(*args):
    return subprocess.run(['git', '-C', project_dir, *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
  try:
    return {'git_commit': git('rev-parse', 'HEAD'),
            'git_dirty': bool(git('status', '--porcelain', '--untracked-files=no'))}
  except (OSError, subprocess.SubprocessError):  # Not a git checkout, or no git at all.
    return {'git_commit': None, 'git_dirty': None}


def data_manifest(examples: Optional[types.Artifact]) -> Optional[Dict[str, Any]]:
  """The sampling manifest (source, seed, per-category counts) of the examples, if wired."""
  if examples is None:
    return None
  try:
    return example_gen_outputs.read_manifest(examples)
  except tf.errors.NotFoundError:
    logging.warning('RegistryPusher: no data manifest beside %s', examples.uri)
    return None


def describe_signatures(saved_model_dir: str) -> Dict[str, Any]:
  """Each serving signature's inputs and outputs, read from the SavedModel itself."""
  loaded = tf.saved_model.load(saved_model_dir)
  described = {}
  for name, function in sorted(loaded.signatures.items()):
    inputs = function.structured_input_signature[1]
    described[name] = {
        'inputs': {key: f'{spec.dtype.name} {spec.shape}' for key, spec in sorted(inputs.items())},
        'outputs': sorted(function.structured_outputs),
    }
  return described


def _training_line(run: Optional[Dict[str, Any]]) -> str:
  if not run:
    return 'Training: not recorded by this model\'s Trainer.'
  machine = run.get('machine') or {}
  return (f'Training: {run.get("precision")} ({run.get("precision_reason")}), '
          f'{run.get("steps")} steps of batch {run.get("batch_size")}, '
          f'{run.get("epochs_reached")} epochs, {run.get("training_seconds")} s on '
          f'{machine.get("cpu_model", "?")}.')


def model_card_markdown(card: Dict[str, Any]) -> str:
  """A short human-readable card; model_card.json has everything."""
  metrics = card.get('metrics') or {}
  lines = [f'# {architectures.title(card["model_name"])} version {card["version"]}', '',
           f'Pushed {card["pushed_at"]} from pipeline run '
           f'`{card["lineage"].get("pipeline_run_id")}`, code '
           f'`{(card.get("code_version") or {}).get("git_commit") or "unknown"}`.', '',
           '| metric | value |', '| --- | --- |']
  lines += [f'| {key} | {value:.4f} |' for key, value in metrics.items()
            if isinstance(value, (int, float))]
  data = card.get('data') or {}
  gallery = card.get('gallery') or {}
  lines += ['', f'{len(card["categories"])} categories: {", ".join(card["categories"])}.', '',
            f'Data: {data.get("source")}, seed {data.get("seed")}, '
            f'{data.get("train_per_category")} train + {data.get("test_per_category")} test '
            'drawings per category.',
            _training_line(card.get('training_run')),
            f'Search gallery: {gallery.get("size", 0)} drawings '
            f'(splits {", ".join(gallery.get("splits", [])) or "none"}).', '',
            card.get('license', ''), '']
  return '\n'.join(lines)
