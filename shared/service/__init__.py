"""What every service wing shares: the FastAPI app (/health, /ready, /metrics, /status), the start
(settings loaded and logged, exit 2 on a bad one), logs, runtime tuning, the volume watcher."""
