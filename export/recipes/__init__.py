"""Recipes: the shipped models (:mod:`~rrim.export.recipes.shipped_models`), the accuracy experiments
(:mod:`~rrim.export.recipes.experiments`, ``rrim experiments``; its design, judging and report beside it) and what both evaluate with
(:mod:`~rrim.export.recipes.evaluation`, the ridge baseline :mod:`~rrim.export.recipes.ridge`)."""
