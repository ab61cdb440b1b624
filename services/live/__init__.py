"""The live trading service: OANDA v20 or paper, restart-safe, hot model swap."""
