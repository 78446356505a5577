"""The reproduction study of Zhang & Chen (2020), built on the :mod:`pyro_bnn` library.

Everything that knows this study lives here; the library knows none of it.

    config       the study's training settings (the paper's SGD), one frozen dataclass
    paper        the numbers printed in the paper, and Szegedy et al.'s
    naming       artifact names and folders
    zoo          every trained net as a named artifact: trained once, then loaded
    sources      the 12 source nets the attacks are made on
    attack_sets  attack sets as artifacts, per protocol
    profiles     the sizes of the 'quick' and 'full' runs
    executors    one interface for the sweep: local worker processes, or Ray tasks
    training     the training jobs of one seed, run through an executor
    tables       Tables 1-4 and the controls, as long-format DataFrames
    pipeline     the stages of one seed: nets, attack sets, tables
    results      seeds combined into one table each; the CSV files
    claims       the paper's headline claims, recomputed
    plots        the figures
    report       REPORT.md
    args         what the commands share: one-line errors, checked --limit and --device
    cli          the ``pyro-bnn`` command

Entry points, each ``main(argv)`` and runnable as ``python runs/<name>.py`` or
``python -m runs.<name>``: reproduce (Tables 1-4 under both protocols), train_bnns,
bnn_curves (accuracy against epochs up to 600), cli. The library's tutorials are scripts
in examples/ (docs/tutorials/).
"""
