"""Recipes: the shipped models (:mod:`~rrim.export.recipes.shipped_models`), the accuracy experiments
(:mod:`~rrim.export.recipes.experiments`, ``rrim experiments``) and what both evaluate with
(:mod:`~rrim.export.recipes.evaluation`, the ridge baseline :mod:`~rrim.export.recipes.ridge`)."""
