"""The Keras-2 switch is set by the entry points (common/legacy_keras.py), not by importing a
package."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script: str) -> str:
  env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
  result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.split('\n')[-2]


def test_importing_the_packages_changes_no_environment():
  out = _run('import os\n'
             'import components, models, pipeline, serving\n'
             'print(os.environ.get("TF_USE_LEGACY_KERAS"))\n')
  assert out == 'None'


def test_the_command_line_selects_keras_2_before_tensorflow_loads():
  out = _run('import os, sys\n'
             'from pipeline import cli\n'
             'try:\n'
             '  cli.main(["run", "--help"])\n'
             'except SystemExit:\n'
             '  pass\n'
             'print(os.environ.get("TF_USE_LEGACY_KERAS"), "tensorflow" in sys.modules)\n')
  assert out == '1 False'
