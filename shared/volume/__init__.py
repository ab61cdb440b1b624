"""The file contract between the services on the checkpoint volume. In: a trained network and its
config (training). Out: checkpoint files and their .ready signals, the candidate format (written and
read here, nowhere else), CURRENT and the promotion record (validation writes, live reads)."""
