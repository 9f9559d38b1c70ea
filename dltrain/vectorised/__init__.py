"""Vectorised sweeps: many runs of one architecture trained at once, as one stacked model.

plan.py decides which jobs of a sweep stack (torch-free); model.py, optim.py and train.py
train a stack so that each member ends as its own run would. Hydra's launcher
`hydra/launcher=vectorised` (hydra_plugins/dltrain_vectorised) puts them together.
"""
