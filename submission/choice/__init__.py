"""Model choice: candidate folders ranked by their validation reports, metric names."""
