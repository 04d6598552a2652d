"""quickdraw-tfx: Quick, Draw! sketch classification and similarity search on TFX.

  quickdraw-tfx run                                   # the default profile, then its report
  quickdraw-tfx run --profile smoke --categories "cat,The Eiffel Tower" --quiet
  quickdraw-tfx run --config my-settings.yaml --seed 7
  quickdraw-tfx report --run-id <id>                  # the report of a past run
  quickdraw-tfx compile-kfp --image IMAGE --output-dir gs://BUCKET/quickdraw-tfx

Exit codes: 0 success, 1 the work failed (the message says why), 2 bad usage.
"""
import argparse
import importlib
import sys

from common import legacy_keras

# Each module defines register(subparsers): it adds its subcommand and sets `func`, a
# callable(args) -> exit code. Modules import TensorFlow lazily so `--help` stays fast.
SUBCOMMAND_MODULES = ('pipeline.run', 'pipeline.report', 'serving.cli', 'kubeflow.compile_kfp',
                      'kubeflow.submit_kfp')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='quickdraw-tfx', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
  for name in SUBCOMMAND_MODULES:
    importlib.import_module(name).register(subparsers)
  return parser


def main(argv=None) -> int:
  legacy_keras.enable()  # Before a subcommand imports TensorFlow.
  args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
  return args.func(args)


if __name__ == '__main__':
  sys.exit(main())
