"""Prompts: parsing a judge prompt into its sections and rendering the one chat prompt."""
