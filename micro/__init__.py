"""micro: the command line of micro-muzero (micro/cli.py)."""
