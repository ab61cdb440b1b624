"""The library the three services share, one folder per stage in the order data flows:
core -> config -> data (bars) -> features -> env | model -> search -> volume (the file contract)
-> training | validation | live | export -> service | cli. A module imports only from stages
below its own (pyproject.toml's import-linter contracts, `make lint`)."""
