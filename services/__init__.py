"""The three long-running services (training, validation, live). Each is a
thin process over `shared/`; services never import each other."""
