"""Command-line verbs behind `micro` that are not a service: the data commands."""
