"""The reproduction study of Zhang & Chen (2020), built on the :mod:`pyro_bnn` library.

Everything that knows this study lives here; the library knows none of it. The commands a
user runs stand at the top, each ``main(argv)``, runnable as ``python runs/<name>.py`` or
``python -m runs.<name>``:

    reproduce       Tables 1-4 under both protocols, the controls, the intervals, REPORT.md
    epsilon_curves  white-box robust accuracy against eps: the attack ensemble's worst case
    train_bnns      the BNNs of Table 1, as one stack
    bnn_curves      accuracy against epochs up to 600, every rho_init
    attack_budget   the authors' attack at growing step budgets
    cli             the ``pyro-bnn`` command

The modules they share sit beneath them in :mod:`runs.study`. The library's tutorials are
scripts in examples/ (docs/tutorials/).
"""
