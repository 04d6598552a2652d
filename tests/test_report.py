"""The experiment report of a real smoke run: its numbers equal the run's artifacts, its
figures are real pictures that load in a browser, and it regenerates from ML Metadata."""
import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from models.architectures import title
from pipeline import cli
from pipeline import report
from tests import report_fixtures as fixtures


@pytest.fixture(scope='module')
def smoke_report(smoke_run, tmp_path_factory):
  config, first, _ = smoke_run
  out = str(tmp_path_factory.mktemp('report'))
  md_path, html_path = report.build(config, first, out)
  with open(md_path) as f:
    markdown = f.read()
  with open(html_path) as f:
    page = f.read()
  return config, first, out, markdown, page


@pytest.fixture(scope='module')
def smoke_nodes(smoke_report):
  from pipeline import results  # pylint: disable=g-import-not-at-top
  config, run_id = smoke_report[:2]
  return results.node_runs(results.open_store(config.metadata_path), config.pipeline_name, run_id)


def _metrics(nodes, model):
  from components.evaluator import outputs as evaluation_outputs  # pylint: disable=g-import-not-at-top
  return evaluation_outputs.read_metrics(
      nodes[f'EmbeddingEvaluator.{model}'].outputs['evaluation'][0].uri)


@pytest.mark.e2e
def test_report_figures_are_real_pictures_embedded_in_the_page(smoke_report):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  _, _, out, markdown, page = smoke_report
  figures = fixtures.FIGURE_LINK.findall(markdown)
  expected = {'pipeline_dag', 'samples', 'learning_curves', 'pr_curves', 'wall_time',
              'per_category', 'category_extremes', 'retrieval_sknet', 'retrieval_skresnet',
              'confusion_sknet', 'confusion_skresnet'}
  # A model that confuses no drawing has no figure of its confusions.
  shown = {os.path.basename(f)[:-4] for f in figures}
  assert expected <= shown <= expected | {'confused_sknet', 'confused_skresnet'}
  for figure in figures:
    path = os.path.join(out, figure)
    assert os.path.getsize(path) > 5000, figure  # A real picture, not an empty canvas.
    with Image.open(path) as image:
      assert min(image.size) > 100, figure
  # The HTML stands alone: every figure embedded, byte for byte, no reference to a file.
  embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
  assert len(embedded) == len(figures)
  with open(os.path.join(out, figures[0]), 'rb') as f:
    assert base64.b64decode(embedded[0]) == f.read()
  assert 'src="figures/' not in page


@pytest.mark.e2e
def test_report_numbers_equal_the_metrics_artifacts(smoke_report, smoke_nodes):
  config, _, _, markdown, _ = smoke_report
  classification = fixtures.section(markdown, '### 3.1')
  retrieval = fixtures.section(markdown, '### 3.2')
  abstract = fixtures.section(markdown, '## Abstract')
  for model in config.models:
    metrics = _metrics(smoke_nodes, model)
    row = fixtures.table_row(classification, f'**{title(model)}**')
    for column, key in ((1, 'train_accuracy'), (2, 'test_accuracy'), (3, 'train_top5_accuracy'),
                        (4, 'test_top5_accuracy')):
      assert row[column] == fixtures.interval(metrics[key], metrics[f'{key}_ci95'],
                                              'accuracy' in key), key
    row = fixtures.table_row(retrieval, f'**{title(model)}**')
    assert row[1] == fixtures.interval(metrics['map'], metrics['map_ci95'], False)
    assert row[2] == f'{metrics["retrieval"]["l2"]["precision_at_k"]["10"]:.3f}'
    assert row[3] == f'{metrics["map_cosine"]:.3f}'
    for key in ('test_accuracy', 'map'):
      assert fixtures.interval(metrics[key], metrics[f'{key}_ci95'], key != 'map') in abstract
    # The per-category table: each category's AP as the Evaluator recorded it.
    for category, ap in metrics['retrieval']['l2']['per_category_ap'].items():
      if ap is not None:
        assert f'| {category} | {ap:.3f} |' in markdown.split(
            f'**{title(model)}**, per category')[1]
  floors = _metrics(smoke_nodes, config.models[0])['floors']
  assert fixtures.table_row(retrieval, 'random ranking')[1] == f'{floors["random_map"]:.3f}'
  raw_pixels = f'raw {config.image_size}x{config.image_size} pixels (L2)'
  assert fixtures.table_row(retrieval, raw_pixels)[1] == f'{floors["raw_pixels_map"]:.3f}'


@pytest.mark.e2e
def test_report_architecture_tables_are_the_exported_models(smoke_report, smoke_nodes):
  """The layer tables add up to the parameters of the SavedModel each Trainer exported."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfx.utils import path_utils  # pylint: disable=g-import-not-at-top
  config, _, _, markdown, _ = smoke_report
  architectures = fixtures.section(markdown, '### 2.3')
  for column, model in enumerate(config.models, start=1):
    exported = tf.saved_model.load(path_utils.serving_model_path(
        smoke_nodes[f'Trainer.{model}'].outputs['model'][0].uri))
    weights = {id(v): v for v in exported.variables}  # Each variable once.
    parameters = sum(int(v.shape.num_elements()) for v in weights.values())
    assert fixtures.table_row(architectures, 'parameters')[column] == f'{parameters:,}'
    layers = architectures.split(f'**{title(model)}**, layer by layer:')[1]
    assert fixtures.table_row(layers, '**total**')[3] == f'**{parameters:,}**'


@pytest.mark.e2e
def test_report_setup_values_equal_the_run(smoke_report, smoke_nodes):
  config, _, _, markdown, _ = smoke_report
  # Wall times are the executions' own, as ML Metadata recorded them.
  trainer = smoke_nodes['Trainer.sknet']
  times = fixtures.section(markdown, '### Time per component')
  assert fixtures.table_row(times, 'Trainer.sknet')[2] == f'{trainer.seconds:.0f}'
  assert trainer.seconds > 1
  # The DAG's components are the run's executions; the activity table lists each one.
  activity = fixtures.section(markdown, '### 2.1')
  for node_id in smoke_nodes:
    assert fixtures.table_row(activity, node_id)[1] == smoke_nodes[node_id].state.lower()
  # The sampling table is the ExampleGen's manifest.
  from components.example_gen import outputs as example_gen_outputs  # pylint: disable=g-import-not-at-top
  manifest = example_gen_outputs.read_manifest(
      smoke_nodes['QuickDrawExampleGen'].outputs['examples'][0])
  data = fixtures.section(markdown, '### Sampling')
  for counts in manifest['categories']:  # One row per category.
    row = fixtures.table_row(data, counts['category'])
    assert row[-2:] == [str(counts['train']), str(counts['test'])]
    assert counts['train'] == config.train_per_category
  assert f'{manifest["totals"]["read"]:,} drawings' in fixtures.section(markdown, '### 2.2')
  # The training settings are the Trainer's; the budget as run is its history's.
  assert fixtures.table_row(markdown, 'epochs')[1:] == [str(config.training[m].epochs)
                                                         for m in config.models]
  training = fixtures.section(markdown, '### 2.4')
  assert fixtures.table_row(training, 'epochs reached')[1:] == ['1.00', '1.00']
  # The recipe and budget as run are each Trainer's history.json.
  from models import training_outputs  # pylint: disable=g-import-not-at-top
  labels = ('budget', 'training steps', 'optimizer', 'learning-rate schedule',
            'peak learning rate', 'learning rate at the end', 'learning rate at each epoch end',
            'precision')
  for column, model in enumerate(config.models, start=1):
    run_dir = smoke_nodes[f'Trainer.{model}'].outputs['model_run'][0].uri
    with open(os.path.join(run_dir, training_outputs.HISTORY_FILE)) as f:
      h = json.load(f)
    cells = {label: fixtures.table_row(training, label)[column] for label in labels}
    assert h['budget']['kind'] == 'epochs'
    assert cells == {
        'budget': f'{h["budget"]["value"]:g} epoch ({h["budget"]["total_steps"]:,} steps)',
        'training steps': f'{h["steps"]:,} of {h["budget"]["total_steps"]:,}',
        'optimizer': h['optimizer'], 'learning-rate schedule': h['lr_schedule'],
        'peak learning rate': f'{h["peak_learning_rate"]:.2e}',
        'learning rate at the end': f'{h["last_learning_rate"]:.2e}',
        'learning rate at each epoch end': ', '.join(
            f'{r:.2e}' for r in h['history']['learning_rate']),
        'precision': h['precision']}, model
  # The deliverables: each pushed model's registry version, as its Pusher recorded it.
  deliverables = fixtures.section(markdown, '## 5. Deliverables')
  for model in config.models:
    pushed = smoke_nodes[f'Pusher.{model}'].outputs['pushed_model'][0]
    version = pushed.custom_properties['pushed_version'].string_value
    assert fixtures.table_row(deliverables, title(model))[1:3] == [
        f'`registry/{model}/{version}`', version]


@pytest.mark.e2e
def test_report_follows_the_scheme(smoke_report):
  markdown = smoke_report[3]
  assert fixtures.headings(markdown) == [
      'Abstract', '1. Introduction', '2. Development', '3. Results and discussion',
      '4. Conclusions', '5. Deliverables', 'Appendix']


@pytest.mark.e2e
def test_report_names_no_folder_of_the_machine(smoke_report):
  config, _, _, markdown, _ = smoke_report
  assert os.path.abspath(config.output_dir) not in markdown
  assert os.path.abspath(config.source) not in markdown


@pytest.mark.e2e
def test_report_subcommand_regenerates_a_past_run(smoke_report, tmp_path, capsys):
  config, run_id, _, markdown, _ = smoke_report
  out = tmp_path / 'again'
  # No --profile: the output folder's only pipeline is the smoke one.
  code = cli.main(['report', '--output-dir', config.output_dir, '--run-id', run_id,
                   '--out', str(out)])
  assert code == 0
  assert str(out / report.REPORT_HTML) in capsys.readouterr().out
  again = (out / report.REPORT_MD).read_text()
  assert fixtures.FIGURE_LINK.findall(again) == fixtures.FIGURE_LINK.findall(markdown)
  assert fixtures.table_row(again, '**skNet**') == fixtures.table_row(markdown, '**skNet**')


@pytest.mark.e2e
def test_report_of_a_missing_run_is_a_clear_error(smoke_report, tmp_path, capsys):
  config = smoke_report[0]
  assert cli.main(['report', '--profile', 'smoke', '--output-dir', config.output_dir,
                   '--run-id', 'no-such-run']) == 1
  assert 'no pipeline run' in capsys.readouterr().err
  assert cli.main(['report', '--profile', 'smoke', '--output-dir', str(tmp_path)]) == 1
  assert 'run the pipeline first' in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which('chromium'), reason='Debian\'s chromium is not installed '
                    '(.ci/run installs it when it can)')
def test_report_renders_in_a_real_browser_with_every_image_loaded(smoke_report, tmp_path):
  _, _, out, markdown, _ = smoke_report
  dom = subprocess.run(
      ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=10000',
       f'--user-data-dir={tmp_path}', '--dump-dom',
       'file://' + os.path.abspath(os.path.join(out, report.REPORT_HTML))],
      capture_output=True, text=True, timeout=120, check=True).stdout
  figures = len(fixtures.FIGURE_LINK.findall(markdown))
  assert f'data-images="{figures}/{figures}"' in dom
  with open(os.path.join(out, report.REPORT_PDF), 'rb') as f:  # Printed beside it.
    assert f.read(5) == b'%PDF-'
