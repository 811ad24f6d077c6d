"""Scoring: prompts -> label probabilities -> decisions, with the fallback prior."""
