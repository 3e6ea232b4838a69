"""Generative models: DCGAN and the WGAN-GP critic (``task="gan"``); each module registers its variants."""
from cvzoo.models.generative import dcgan  # noqa: F401
