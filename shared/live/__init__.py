"""Live trading: feeds, the trade journal, the per-bar trader."""
