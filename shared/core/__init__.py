"""Imports no stage: the instruments table, the feature spec (names, window, version: the contract
every stage and every checkpoint reads), the accounting Book, the OANDA client helper, the
settings loader (environment, .env, TOML)."""
