"""The paper's experiments at toy scale, and the benchmarks: the machinery behind ``longlora-kit
reproduce`` and ``longlora-kit bench``, one idea per module, listed from the bottom of the dependency
graph up (each imports only modules above it in this list, never below):

- :mod:`.claims`      the shared types: ``RunSpec``, ``Arm``, ``Claim``, ``Experiment``, ``Stats``, ``verdict``
- :mod:`.tables`      the paper's Tables 1, 2, 6, 7, 8 and the passkey figure as data (``EXPERIMENTS``)
- :mod:`.cache`       the code version (syntax-tree hashing), run keys, records, atomic writes
- :mod:`.runner`      the ``Runner`` protocol (prepare / run / share_key) and ``RunContext``
- :mod:`.toy_runner`  ``ToyRunner``: pre-train a tiny base, fine-tune and measure one run; ``settings_for``
- :mod:`.execute`     ``run_experiments``: cache look-up, serial or parallel runs, the results dict
- :mod:`.report`      the markdown report, ``load_results``, ``tally`` (the figure: ``viz.experiment_figure``)
- :mod:`.bench_attention`, :mod:`.bench_train`  ``longlora-kit bench attention`` / ``bench train``
- :mod:`.cli`         the ``reproduce`` and ``bench`` sub-commands

Nothing is imported here: ``from longlora_kit.experiments import report`` loads what it names.
"""
