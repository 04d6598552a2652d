"""The Pusher's work: check the blessing, then stage the SavedModel, the search gallery and the
model card and publish them as one new registry version (domain/registry_store.py)."""
import datetime
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import json_utils
from tfx.utils import proto_utils

from common import progress
from components.evaluator import outputs as evaluation_outputs
from components.evaluator.outputs import HEADLINE_METRICS
from components.example_gen import outputs as example_gen_outputs
from components.pusher import model_card as model_card_lib
from domain import registry_store

EXAMPLES_KEY = 'examples'
EMBEDDINGS_KEY = 'embeddings'
EVALUATION_KEY = 'evaluation'
DEFAULT_GALLERY_SPLITS = ('test',)


def _single(input_dict: Dict[str, List[types.Artifact]], key: str) -> Optional[types.Artifact]:
  artifacts = input_dict.get(key) or []
  return artifacts[0] if artifacts else None


def build_gallery(splits, examples: types.Artifact, embeddings: Optional[types.Artifact],
                  model_path: str, batch_size: int = 64) -> registry_store.Gallery:
  """The gallery of `splits`: the test split's embeddings come from the Evaluator's artifact
  (matched to the examples' PNGs by drawing id); other splits are embedded here."""
  columns = {'embedding': [], 'category': [], 'id': [], 'split': [], 'png': []}
  embed = None
  for split in splits:
    records = example_gen_outputs.read_split(examples, split)
    if split == 'test' and embeddings is not None:
      vectors, categories, ids = evaluation_outputs.load_embeddings(embeddings.uri)
      png_by_id = dict(zip(records['id'], records['png']))
      missing = [i for i in ids if i not in png_by_id]
      if missing or len(ids) != len(png_by_id):
        raise ValueError(f'{embeddings.uri}: the embeddings ({len(ids)} drawings) do not match '
                         f'the examples\' test split ({len(png_by_id)}); e.g. missing PNGs for '
                         f'{missing[:3]}. Wire the same examples the Evaluator read.')
      pngs = [png_by_id[i] for i in ids]
    else:
      if embed is None:
        embed = tf.saved_model.load(model_path).signatures['embed']
      parts, serialized = [], records['serialized']
      with progress.Progress(len(serialized), f'RegistryPusher: embedding gallery split {split}',
                             'drawings') as shown:
        for start in range(0, len(serialized), batch_size):
          batch = serialized[start:start + batch_size]
          parts.append(embed(examples=tf.constant(batch))['embedding'].numpy())
          shown.update(len(batch))
      vectors = np.concatenate(parts)
      categories, ids, pngs = records['category'], records['id'], records['png']
    logging.info('RegistryPusher: gallery split %s: %d drawings', split, len(ids))
    columns['embedding'].append(np.asarray(vectors, np.float32))
    columns['category'] += list(categories)
    columns['id'] += list(ids)
    columns['split'] += [split] * len(ids)
    columns['png'] += pngs
  return registry_store.Gallery(embedding=np.concatenate(columns['embedding']),
                                category=np.asarray(columns['category'], str),
                                id=np.asarray(columns['id'], str),
                                split=np.asarray(columns['split'], str), png=columns['png'])


class Executor(pusher_executor.Executor):
  """Checks the blessing, then publishes SavedModel + card + gallery as one new version."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    pushed = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(pushed)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    if destination.WhichOneof('destination') != 'filesystem':
      raise ValueError('RegistryPusher pushes to a filesystem registry only; set '
                       'push_destination.filesystem.base_directory')
    model_dir = destination.filesystem.base_directory
    model_path = self.GetModelPath(input_dict)
    custom_config = json_utils.loads(
        exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null') or {}

    card = {}

    def stage(folder: str) -> None:
      io_utils.copy_dir(model_path, folder)
      gallery = self._gallery(input_dict, custom_config, model_path)
      if gallery is not None:
        registry_store.write_gallery(os.path.join(folder, registry_store.GALLERY_FILE), gallery)
      card.update(self._model_card(input_dict, custom_config, folder, gallery))

    def card_files(version: int) -> Dict[str, str]:
      # The version is known only once claimed, after staging; publish writes these last.
      card['version'] = str(version)
      return {registry_store.MODEL_CARD_MARKDOWN: model_card_lib.model_card_markdown(card),
              registry_store.MODEL_CARD_FILE: json.dumps(card, indent=2)}

    version, published = registry_store.publish(model_dir, stage, card_files)
    # The artifact keeps the card of what was pushed (the registry holds the model itself).
    for name in (registry_store.MODEL_CARD_FILE, registry_store.MODEL_CARD_MARKDOWN):
      io_utils.copy_file(os.path.join(published, name), os.path.join(pushed.uri, name), True)
    self._MarkPushed(pushed, pushed_destination=published, pushed_version=str(version))
    logging.info('RegistryPusher: %s version %d pushed to %s', custom_config.get('model_name'),
                 version, published)

  def _gallery(self, input_dict, custom_config, model_path) -> Optional[registry_store.Gallery]:
    examples = _single(input_dict, EXAMPLES_KEY)
    splits = list(custom_config.get('gallery_splits') or DEFAULT_GALLERY_SPLITS)
    if examples is None:
      logging.warning('RegistryPusher: no examples wired in; pushing without a search gallery')
      return None
    return build_gallery(splits, examples, _single(input_dict, EMBEDDINGS_KEY), model_path)

  def _model_card(self, input_dict, custom_config, folder: str,
                  gallery: Optional[registry_store.Gallery]) -> Dict[str, Any]:
    """The card of a staged version; 'version' is filled in when the number is claimed."""
    model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
    blessing = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.MODEL_BLESSING_KEY])
    examples = _single(input_dict, EXAMPLES_KEY)
    embeddings = _single(input_dict, EMBEDDINGS_KEY)
    evaluation = _single(input_dict, EVALUATION_KEY)
    with tf.io.gfile.GFile(os.path.join(folder, registry_store.CATEGORIES_FILE)) as f:
      categories = [line.strip() for line in f if line.strip()]

    def artifact_ref(artifact):
      return {'id': artifact.id, 'uri': artifact.uri} if artifact is not None else None

    return {
        'model_name': custom_config.get('model_name'),
        'version': None,
        'pushed_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        # The blessing's headline metrics (what the blessing was decided on) ...
        'metrics': {key: blessing.get_float_custom_property(key) for key in HEADLINE_METRICS
                    if blessing.has_custom_property(key)},
        # ... and everything the Evaluator wrote, whatever keys it has grown.
        'evaluation': (evaluation_outputs.read_metrics(evaluation.uri)
                       if evaluation is not None else None),
        'categories': categories,
        'data': dict(custom_config.get('data') or {}),
        'data_manifest': model_card_lib.data_manifest(examples),
        'training': custom_config.get('training'),
        # What the Trainer did with it: precision used, steps, epochs reached, machine.
        'training_run': model_card_lib.training_run(folder),
        'gallery': {
            'file': registry_store.GALLERY_FILE if gallery is not None else None,
            'size': len(gallery) if gallery is not None else 0,
            'splits': sorted(set(gallery.split.tolist())) if gallery is not None else [],
            'embedding_dim': int(gallery.embedding.shape[1]) if gallery is not None else None,
            'distance': 'euclidean (L2) on fc_1',
        },
        'signatures': model_card_lib.describe_signatures(folder),
        'lineage': {
            'pipeline_name': self._context.pipeline_info.id if self._context and
                             self._context.pipeline_info else None,
            'pipeline_run_id': self._context.pipeline_run_id if self._context else None,
            'model_artifact': artifact_ref(model),
            'blessing_artifact': artifact_ref(blessing),
            'evaluation_artifact': artifact_ref(evaluation),
            'embeddings_artifact': artifact_ref(embeddings),
            'examples_artifact': artifact_ref(examples),
        },
        'code_version': model_card_lib.code_version(),
        'license': 'Trained on Quick, Draw! data made available by Google, Inc. under CC BY 4.0.',
    }
