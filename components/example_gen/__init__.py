"""QuickDrawExampleGen: samples Quick, Draw! categories into rendered train/test tf.Examples and a
sampling manifest (component.py declares it, executor.py does the work, category_sampling.py is
the per-category pass, outputs.py reads the results back)."""
