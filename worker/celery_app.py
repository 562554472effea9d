"""The entry point for Celery's own command line: ``celery -A embedq.worker.celery_app worker``.

Importing this module *is* process start for such a worker, so the app is built here from the
``EMBEDQ_*`` environment and the JSON registry; nothing else imports this module.
"""

from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.worker.app import create_worker_app

_settings = load_settings()
app = create_worker_app(_settings, load_registry(_settings.config_dir))
