"""quickdraw-tfx: Quick, Draw! sketch classification and similarity search on TFX."""
import setuptools

setuptools.setup(
    name='quickdraw-tfx',
    version='0.1.0',
    description='TFX pipeline: Quick, Draw! sampling, skNet/skResNet training, '
                'leave-one-out retrieval mAP, model registry.',
    python_requires='>=3.10,<3.11',
    # kubeflow/ is a namespace package (no __init__.py), so Kubeflow's own kubeflow.* packages
    # installed beside it stay importable.
    packages=setuptools.find_namespace_packages(
        include=['common', 'models', 'domain', 'components', 'components.*', 'pipeline',
                 'serving', 'kubeflow']),
    py_modules=['quickdraw'],  # The artifact types by their ML Metadata names (Kubeflow).
    package_data={
        'domain': ['data/*.txt'],
        'pipeline': ['templates/*.j2'],  # The report's templates.
        'serving': ['templates/*.html', 'static/*.js', 'static/*.css'],  # The sketch pad.
    },
    install_requires=[
        'tfx[kfp]==1.16.0',
        'apache-beam[gcp]==2.60.0',
        'tensorflow==2.16.2',
        'tf-keras==2.16.0',
        'tensorflow-transform==1.16.0',
        'pillow',
        'scikit-learn',
        'pyyaml',  # --config files
        'matplotlib',  # report figures
        'markdown',  # report.md -> report.html
        'jinja2',  # the report's templates (pipeline/templates)
        'shapely',  # Ramer-Douglas-Peucker for raw strokes (domain/stroke_simplification.py).
        'flask',  # serving/http.py
        'waitress',  # serving/server.py: the production WSGI server of `serve`
    ],
    extras_require={'test': ['pytest', 'faiss-cpu', 'import-linter'], 'ann': ['faiss-cpu']},
    entry_points={'console_scripts': ['quickdraw-tfx=pipeline.cli:main']},
)
