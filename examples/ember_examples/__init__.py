"""What runs Ember from this source tree and is not shipped with it: the demo (``make demo``:
``python -m ember_examples.demo``) and the readers of the real and sample data that the
demo, the tests and the benchmarks use. Importable with ``examples/`` on ``sys.path``
(``make`` and pytest put it there; by hand: ``PYTHONPATH=examples``)."""
