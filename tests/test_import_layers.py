"""The layers point down: import-linter keeps the contracts of .importlinter, and breaks on an
import that points up."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('models', 'components', 'pipeline', 'serving', 'kubeflow', 'benchmarks')
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


def test_an_import_that_points_up_breaks_the_layers(tmp_path):
  project = _copy(tmp_path)
  _add_import(project, 'models.features', 'from pipeline import config')
  result = _lint(project)
  assert result.returncode == 1, result.stdout[-4000:]
  assert 'models.features -> pipeline.config' in result.stdout


def test_tfx_in_the_models_and_kubeflow_in_the_benchmarks_are_refused(tmp_path):
  project = _copy(tmp_path)
  _add_import(project, 'models.sknet', 'import tfx')
  _add_import(project, 'benchmarks.search', 'from kubeflow import estimate')
  result = _lint(project)
  assert result.returncode == 1, result.stdout[-4000:]
  assert 'models.sknet -> tfx' in result.stdout
  assert 'benchmarks.search -> kubeflow.estimate' in result.stdout
