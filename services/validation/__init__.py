"""The validation service: watch for candidates, validate, promote."""
