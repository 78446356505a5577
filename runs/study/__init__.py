"""The study's modules, beneath the commands of :mod:`runs`.

config       the study's training settings (the paper's SGD), one frozen dataclass
paper        the numbers printed in the paper, and Szegedy et al.'s
naming       artifact names and folders
zoo          every trained net as a named artifact: trained once, then loaded
sources      the 12 source nets the attacks are made on
attack_sets  attack sets as artifacts, per protocol
profiles     the sizes of the 'quick', 'hour' and 'full' runs
protocols    the 'paper' and 'rigorous' protocols: their rules, a source's attack set
executors    one interface for the sweep: local worker processes, or Ray tasks
training     the training jobs of one seed, run through an executor
tables       Tables 1-4 and the controls, as long-format DataFrames
pipeline     the stages of one seed: nets, attack sets, tables
results      seeds combined into one table each; the CSV files
claims       the paper's headline claims, recomputed
intervals    the claims as paired differences with 95% t-intervals over seeds and images
             (``python -m runs.study.intervals``: their coverage by simulation)
plots        the figures
report       REPORT.md, and README.md's verdict (``python -m runs.study.report``)
args         what the commands share: one-line errors, checked --limit and --device
machine      the CPU (and GPU) a number was measured on
"""
