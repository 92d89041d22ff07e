"""Recipes: the glue from an outside dependency into a seam (app/recipes/README.md)."""
