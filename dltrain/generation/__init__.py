"""Generative models' shared machinery (task=generation): the adversarial losses, the feature
network and the Fréchet distance that score samples, the scorer a run validates with, the
pictures of samples, and the checks of the config keys (torch-free, as dltrain.config is).

The models themselves are dltrain.models.gan and dltrain.models.diffusion. Nothing here is
imported by `import dltrain.generation`: the modules are imported where they are used.
"""
