"""Probes: the lectures' diagnostics, looking into a run through the loop's hooks.

`probe=[activations,gradients,...]` picks them (conf/probe/); each option puts its own keys under
`probe.<name>`, and `probe.every` (optimiser steps) and `probe.batch` (samples) are shared.
`build_probes` (build.py) turns the config into one `Hooks` object for `fit`; without probes it
is the loop's no-op `NO_HOOKS`, so a run without probes does nothing extra.

Probes look, they never touch: their own forward passes run in eval mode without autograd on a
fixed batch, their random draws come from generators of their own, and any weights they move
are put back exactly. Under data-parallel training rank 0 alone probes, on its bare model,
without collectives.

This file imports nothing: the sweep report reads the probes' tags (tags.py) without torch,
and importing dltrain.probes.tags runs this file first. The builder is dltrain.probes.build.
"""
