"""Classification families; each module registers its variants on import."""
