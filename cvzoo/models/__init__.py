"""Models: the registry, weight loading and every family of the notes."""

from cvzoo.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
