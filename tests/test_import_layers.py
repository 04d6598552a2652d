"""The layers point down: import-linter keeps the contracts of .importlinter, and breaks on an
import that points up, between packages or inside one; serving loads no TFX; kubeflow/ leaves
Kubeflow's own kubeflow.* packages importable."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('common', 'models', 'domain', 'components', 'pipeline', 'serving', 'kubeflow',
            'benchmarks')
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), 'lint-imports')


def _lint(project: str) -> subprocess.CompletedProcess:
  # lint-imports puts its working directory first on sys.path: it analyses `project`'s packages.
  return subprocess.run([LINT_IMPORTS, '--config', os.path.join(project, '.importlinter')],
                        cwd=project, capture_output=True, text=True, timeout=300, check=False)


def test_the_project_keeps_every_contract():
  result = _lint(ROOT)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  assert '0 broken' in result.stdout


def _copy(tmp_path) -> str:
  project = str(tmp_path / 'project')
  for package in PACKAGES:
    shutil.copytree(os.path.join(ROOT, package), os.path.join(project, package),
                    ignore=shutil.ignore_patterns('__pycache__', '*.md', 'results', 'static',
                                                  'templates', 'data', 'Dockerfile'))
  shutil.copy(os.path.join(ROOT, '.importlinter'), project)
  return project


def _add_import(project: str, module: str, line: str) -> None:
  with open(os.path.join(project, *module.split('.')) + '.py', 'a') as f:
    f.write(f'\n{line}\n')


def _lint_with_imports(tmp_path, added: dict) -> str:
  """import-linter's report on a copy of the project with `added` (module -> import line)
  appended; the contracts must break."""
  project = _copy(tmp_path)
  for module, line in added.items():
    _add_import(project, module, line)
  result = _lint(project)
  assert result.returncode == 1, result.stdout[-4000:]
  return result.stdout


def test_an_import_that_points_up_breaks_the_layers(tmp_path):
  report = _lint_with_imports(tmp_path, {'models.features': 'from pipeline import config'})
  assert 'models.features -> pipeline.config' in report


def test_tfx_in_the_models_and_kubeflow_in_the_benchmarks_are_refused(tmp_path):
  report = _lint_with_imports(tmp_path, {'models.sknet': 'import tfx',
                                         'benchmarks.search': 'from kubeflow import estimate'})
  assert 'models.sknet -> tfx' in report
  assert 'benchmarks.search -> kubeflow.estimate' in report


def test_imports_inside_a_package_point_down_too(tmp_path):
  report = _lint_with_imports(tmp_path, {
      'serving.registry': 'from serving import http',
      'components.evaluator.outputs': 'from components.evaluator import executor',
      'domain.url_cache': 'from domain import drawing_records'})
  for imported in ('serving.registry -> serving.http',
                   'components.evaluator.outputs -> components.evaluator.executor',
                   'domain.url_cache -> domain.drawing_records'):
    assert imported in report, imported


def test_serving_and_domain_refuse_the_tfx_layer(tmp_path):
  report = _lint_with_imports(tmp_path, {
      'serving.search': 'from components.evaluator import outputs',
      'domain.retrieval': 'import apache_beam'})
  assert 'serving.search -> components.evaluator.outputs' in report
  assert 'domain.retrieval -> apache_beam' in report


def _python(code: str, **env) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, check=False, env={**os.environ, **env})


def test_importing_serving_loads_no_tfx_beam_or_tfma():
  modules = [f'serving.{name[:-3]}' for name in sorted(os.listdir(os.path.join(ROOT, 'serving')))
             if name.endswith('.py') and name != '__init__.py']
  result = _python(
      'import importlib, sys\n'
      f'for name in {modules!r}: importlib.import_module(name)\n'
      'heavy = ("tfx", "tfx_bsl", "apache_beam", "tensorflow_model_analysis", '
      '"tensorflow_transform", "ml_metadata")\n'
      'print(sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy}))')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'serving.http' in modules and 'serving.search' in modules
  assert result.stdout.strip().splitlines()[-1] == '[]'


@pytest.mark.parametrize('stub_init', [None, 'pkgutil'], ids=['pep420', 'pkgutil-style'])
def test_kubeflow_namespace_holds_ours_and_kubeflows_own(tmp_path, stub_init):
  """A stand-in for Kubeflow's SDK (kubeflow.training) installed beside the project."""
  stub = tmp_path / 'site' / 'kubeflow'
  (stub / 'training').mkdir(parents=True)
  (stub / 'training' / '__init__.py').write_text('SDK = "kubeflow-training stand-in"\n')
  if stub_init == 'pkgutil':  # The older style of namespace package, with an __init__.py.
    (stub / '__init__.py').write_text(
        '__path__ = __import__("pkgutil").extend_path(__path__, __name__)\n')
  result = _python('import kubeflow.training, kubeflow.estimate\n'
                   'print(kubeflow.training.SDK, kubeflow.estimate.__name__)',
                   PYTHONPATH=str(tmp_path / 'site'))
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == 'kubeflow-training stand-in kubeflow.estimate'
