"""Recipes over train -> merge -> evaluate: experiments, k-fold, ensembles, HPO, distillation."""
