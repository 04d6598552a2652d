"""The report in the specification's scheme, from a made-up run with the two real networks:
every section is there and holds the run's numbers, the architecture tables add up to the
models' parameter counts, the DAG is the run's lineage, the deliverables name what was pushed
with code that fits serving/'s API, and the HTML and PDF render in Chromium with every image."""
import ast
import os
import re
import subprocess
import types

import pytest

from pipeline import report
from pipeline import report_dag
from pipeline import report_deliverables
from pipeline import report_pdf
from tests import report_fixtures as fixtures
from tests.headless_chromium import needs_chromium

SECTIONS = ('Abstract', '1. Introduction', '2. Development', '3. Results and discussion',
            '4. Conclusions', '5. Deliverables', 'Appendix')


@pytest.fixture(scope='module')
def scheme_report(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('scheme')
  run = fixtures.synthetic_run(tmp_path, 10, architectures=True)
  out = str(tmp_path / 'report')
  md_path, html_path = report.write_report(run, out)  # With a PDF when Chromium is here.
  with open(md_path) as f:
    markdown = f.read()
  return run, out, markdown, html_path


def test_every_section_is_there_in_order(scheme_report):
  markdown = scheme_report[2]
  assert fixtures.headings(markdown) == list(SECTIONS)
  assert fixtures.headings(fixtures.section(markdown, '## 2. Development'), 3) == [
      '2.1 The pipeline as it ran', '2.2 Data', '2.3 The two architectures', '2.4 Training',
      '2.5 Evaluation protocol']
  assert fixtures.headings(fixtures.section(markdown, '## 3. Results'), 3) == [
      '3.1 Classification', '3.2 Similarity search', '3.3 Per category',
      '3.4 Training behaviour']
  # Each question's figures sit in its section.
  for heading, figures in (('### 2.1', ['pipeline_dag']), ('### 2.2', ['samples']),
                           ('### 3.2', ['pr_curves', 'retrieval_sknet', 'retrieval_skresnet']),
                           ('### 3.3', ['per_category', 'category_extremes', 'confusion_sknet',
                                        'confused_skresnet']),
                           ('### 3.4', ['learning_curves']), ('## Appendix', ['wall_time'])):
    links = fixtures.FIGURE_LINK.findall(fixtures.section(markdown, heading))
    assert {f'figures/{name}.png' for name in figures} <= set(links), heading


def test_every_list_and_table_of_the_markdown_is_one_on_the_page(scheme_report):
  """A list or table glued to the paragraph above it is plain text to Markdown."""
  _, _, markdown, html_path = scheme_report
  with open(html_path) as f:
    page = f.read()
  bullets = sum(1 for line in markdown.splitlines() if line.startswith('- '))
  tables = sum(1 for block in re.split(r'\n\s*\n', markdown) if block.startswith('|'))
  assert bullets > 20 and tables > 10
  assert (page.count('<li>'), page.count('<table>')) == (bullets, tables)


def test_each_section_holds_the_runs_numbers(scheme_report):
  run, _, markdown, _ = scheme_report
  abstract = fixtures.section(markdown, '## Abstract')
  for model in run.models:
    m = model.metrics
    assert fixtures.interval(m['test_accuracy'], m['test_accuracy_ci95'], True) in abstract
    assert fixtures.interval(m['map'], m['map_ci95'], False) in abstract
  assert abstract.count('Verdict: ') == 1
  introduction = fixtures.section(markdown, '## 1. Introduction')
  first = run.models[0].metrics
  assert f'{first["num_categories"]} categories' in introduction
  assert f'{first["embedding_dim"]}-unit' in introduction
  assert f'over the {first["map_queries"]} queries' in introduction
  assert 'CC BY 4.0' in introduction
  data = fixtures.section(markdown, '### 2.2')
  totals = run.manifest['totals']
  assert f'{totals["read"]:,} drawings' in data and f'{totals["train"]:,} train' in data
  protocol = fixtures.section(markdown, '### 2.5')
  assert f'{first["floors"]["random_map"]:.3f}' in protocol
  assert f'{first["test_examples"]:,} test drawings' in protocol
  training = fixtures.section(markdown, '### 2.4')
  h = run.models[0].history
  assert fixtures.table_row(training, 'learning rate at each epoch end')[1:] == [
      ', '.join(f'{r:.2e}' for r in h['history']['learning_rate'])] * 2
  assert fixtures.table_row(training, 'budget')[1:] == [
      f'{h["budget"]["value"]} images ({h["budget"]["total_steps"]} steps)'] * 2
  assert fixtures.table_row(training, 'warm-up')[1:] == [
      f'{h["warmup_fraction"]:.0%} of the budget'] * 2
  assert fixtures.table_row(training, 'learning rate at the end')[1:] == [
      f'{h["last_learning_rate"]:.2e}'] * 2
  # The recipe in words: optimizer, schedule, the budget and that all of it ran.
  recipe = next(line for line in training.splitlines() if line.startswith('- skNet: '))
  assert h['steps'] == h['budget']['total_steps']
  for fact in ('Adam', f'first {h["warmup_fraction"]:.0%} of the budget',
               f'peak {h["peak_learning_rate"]:.2e}', 'linear decay to zero', h['precision'],
               f'trained its whole budget, {h["budget"]["value"]:,} images ({h["steps"]:,} '
               f'steps): {h["epochs_reached"]:.2f} epochs'):
    assert fact in recipe, fact
  per_category = fixtures.section(markdown, '### 3.3')
  worst = min(first['retrieval']['l2']['per_category_ap'].items(), key=lambda kv: kv[1])
  assert f'{worst[0]} worst (AP {worst[1]:.3f})' in per_category
  behaviour = fixtures.section(markdown, '### 3.4')
  gap = (first['train_accuracy'] - first['test_accuracy']) * 100
  assert f'a gap of {gap:+.1f} points' in behaviour
  assert f'same training budget, {h["budget"]["value"]} images' in behaviour
  assert f'learning rates ended at {h["last_learning_rate"]:.2e}' in behaviour
  conclusions = fixtures.section(markdown, '## 4. Conclusions')
  assert f'holds {first["test_examples"]:,} drawings' in conclusions
  assert 'seed 1' in conclusions


def test_the_architecture_tables_match_the_models_parameter_counts(scheme_report):
  run, _, markdown, _ = scheme_report
  architectures = fixtures.section(markdown, '### 2.3')
  summary = fixtures.table_row(architectures, 'parameters')
  for column, model in enumerate(run.models, start=1):
    anatomy, parameters = fixtures.anatomy(model.name, 10, 32)
    assert sum(row['parameters'] for row in anatomy['rows']) == parameters
    assert summary[column] == f'{parameters:,}'
    layers = architectures.split(f'**{model.title}**, layer by layer:')[1]
    assert fixtures.table_row(layers, '**total**')[3] == f'**{parameters:,}**'
    assert fixtures.table_row(layers, '`fc_1`')[2] == '1024'
  # skResNet's six residual additions, each naming what it adds; skNet has none.
  assert fixtures.table_row(architectures, 'residual additions')[1:] == ['0', '6']
  resnet = architectures.split('**skResNet**, layer by layer:')[1]
  assert fixtures.table_row(resnet, '`residual_1`')[-1] == (
      'residual addition: conv2_2 + maxpool_1')


def test_the_reader_sees_the_models_titles_the_ids_keep_their_identifiers(scheme_report):
  """skNet and skResNet, as the specification writes them, wherever the text names a model;
  the lowercase identifiers only in node ids, registry paths, code and figure files."""
  _, _, markdown, _ = scheme_report
  headline = markdown.splitlines()[0]
  assert headline.endswith(': skNet against skResNet')
  assert 'sknet' not in headline and 'skresnet' not in headline
  assert 'Which of two convolutional networks, skNet and skResNet, is better' in (
      fixtures.section(markdown, '## Abstract'))
  prose = [line for line in markdown.splitlines() if not line.startswith(('|', '!['))
           and not re.search(r'from_registry|registry/', line)]
  assert [line for line in prose if re.search(r'\bsk(res)?net\b', line)] == []
  activity = fixtures.section(markdown, '### 2.1')
  assert fixtures.table_row(activity, 'Trainer.sknet')[2].startswith('fitted skNet: ')
  assert '![Confusion matrix, skResNet](figures/confusion_skresnet.png)' in markdown


def test_the_anatomy_of_an_exported_model_is_the_built_ones(tmp_path):
  """The report reads the SavedModel back: same rows, shapes and counts as the model."""
  from models import model_anatomy  # pylint: disable=g-import-not-at-top
  from models import architectures  # pylint: disable=g-import-not-at-top
  model = architectures.build('skresnet', 4, image_size=32)
  model.save(str(tmp_path / 'saved'), save_format='tf', include_optimizer=False)
  exported = model_anatomy.anatomy(model_anatomy.load_exported(str(tmp_path / 'saved')))
  assert exported == model_anatomy.anatomy(model)
  assert exported['parameters'] == model.count_params()
  assert exported['forward_flops'] == 2 * sum(m for _, m in model_anatomy.layer_macs(model))


def test_the_deliverables_name_the_pushed_model_and_code_that_fits_the_serving_api(
    scheme_report):
  from serving import search  # pylint: disable=g-import-not-at-top
  run, _, markdown, _ = scheme_report
  deliverables = fixtures.section(markdown, '## 5. Deliverables')
  assert fixtures.table_row(deliverables, 'skNet')[1:4] == ['`registry/sknet/3`', '3',
                                                            '50 drawings (test)']
  # Its signatures, from its model card: skresnet was not pushed, so not named.
  for name, spec in fixtures.CARD_SIGNATURES.items():
    row = fixtures.table_row(deliverables, f'`{name}`')
    assert row[2] == ', '.join(f'`{o}`' for o in spec['outputs']) and row[3] == 'skNet v3'
  code = re.search(r'```python\n(.*?)\n```', deliverables, re.S).group(1)
  assert len(code.splitlines()) == 3
  tree = ast.parse(code)
  called = {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)}
  assert called == {'from_registry', 'search', 'read_queries'}
  assert callable(search.Searcher.from_registry) and callable(search.read_queries)
  call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
              and getattr(node.func, 'attr', '') == 'from_registry')
  assert [ast.literal_eval(a) for a in call.args] == ['registry', 'sknet']
  assert ast.literal_eval(call.keywords[0].value) == 3
  assert report_deliverables.shown_path(run, '/elsewhere/registry/sknet/3') == (
      '.../registry/sknet/3')


def test_the_dag_is_the_runs_lineage(tmp_path):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top

  def node(node_id, start, outputs, inputs=None, state='COMPLETE'):
    return types.SimpleNamespace(node_id=node_id, state=state, start_time=start, end_time=start,
                                 outputs=outputs, inputs=inputs or {})
  art = {i: metadata_store_pb2.Artifact(id=i) for i in range(1, 8)}
  nodes = {n.node_id: n for n in (
      node('ExampleGen', 0, {'examples': [art[1]], 'manifest': [art[2]]}, state='CACHED'),
      node('Trainer.a', 1, {'model': [art[3]], 'model_run': [art[4]]}, {'examples': [art[1]]}),
      node('Resolver.a', 0, {'model': [art[5]]}),
      node('Evaluator.a', 2, {'evaluation': [art[6]]},
           {'model': [art[3]], 'baseline_model': [art[5]], 'examples': [art[1]]}),
      node('Pusher.a', 3, {'pushed_model': [art[7]]},
           {'model': [art[3]], 'evaluation': [art[6]]}))}
  graph = report_dag.lineage(nodes)
  assert ('ExampleGen', 'artifact 1') in graph.edges
  assert ('artifact 1', 'Trainer.a') in graph.edges and ('artifact 5', 'Evaluator.a') in graph.edges
  assert graph.cached == ['ExampleGen']
  # Outputs nobody read (manifest, model_run, pushed_model) are one box under their producer.
  assert graph.labels['unused Trainer.a'] == 'model_run'
  rows = report_dag.layers(graph)
  assert rows['ExampleGen'] == 0 and rows['Trainer.a'] == 2 and rows['Evaluator.a'] == 4
  assert rows['Resolver.a'] == rows['Evaluator.a'] - 2  # Just above what it feeds.
  assert rows['unused Trainer.a'] == rows['Trainer.a'] + 1
  assert report_dag.figure_dag(nodes, str(tmp_path / 'dag.png'))
  assert os.path.getsize(tmp_path / 'dag.png') > 5000


def test_without_chromium_the_report_says_how_to_print_one(tmp_path, monkeypatch):
  monkeypatch.setattr(report_pdf, 'browser', lambda: None)
  run = fixtures.synthetic_run(tmp_path, 4)
  out = tmp_path / 'report'
  out.mkdir()
  (out / report.REPORT_PDF).write_bytes(b'%PDF an older report')
  md_path, _ = report.write_report(run, str(out))
  assert not (out / report.REPORT_PDF).exists()  # Not a PDF of other pages.
  deliverables = fixtures.section(open(md_path).read(), '## 5. Deliverables')
  assert report_pdf.how_to_print(report.REPORT_HTML, report.REPORT_PDF) in deliverables
  assert 'Chromium was not found' in deliverables


def _pdf_images(path: str) -> int:
  """Image XObjects of a PDF whose object dictionaries are plain text (Chromium's, Skia)."""
  with open(path, 'rb') as f:
    return len(re.findall(rb'/Subtype\s*/Image', f.read()))


@needs_chromium
def test_html_and_pdf_render_in_chromium_with_every_image(scheme_report, tmp_path):
  _, out, markdown, html_path = scheme_report
  figures = len(fixtures.FIGURE_LINK.findall(markdown))
  dom = subprocess.run(
      ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=10000',
       f'--user-data-dir={tmp_path}', '--dump-dom', 'file://' + os.path.abspath(html_path)],
      capture_output=True, text=True, timeout=180, check=True).stdout
  assert f'data-images="{figures}/{figures}"' in dom
  pdf = os.path.join(out, report.REPORT_PDF)
  with open(pdf, 'rb') as f:
    assert f.read(5) == b'%PDF-'
  assert _pdf_images(pdf) >= figures  # Every figure drawn into the PDF.
  deliverables = fixtures.section(markdown, '## 5. Deliverables')
  assert f'`{report.REPORT_PDF}`, printed from the HTML by headless Chromium' in deliverables
