"""A small Celery app with three tasks, for scenarios/celery-shop.toml."""
