"""The decision core: enrollment, timing, quiet hours, holdout, exits, simulate."""
