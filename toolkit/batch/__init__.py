"""`batch`: many users from one YAML list. ``userlist`` reads and validates the list (and
``schema`` publishes it as JSON Schema), ``runner`` runs the users through the pool, ``worker``
does one user, ``manifest`` records what was written."""

from toolkit.batch.runner import BatchResult, default_jobs, preflight, run_batch
from toolkit.batch.userlist import CASettings, UserEntry, UserList, load_user_list
from toolkit.batch.worker import BatchSettings, UserOutcome, process_user

__all__ = [
    "BatchResult",
    "BatchSettings",
    "CASettings",
    "UserEntry",
    "UserList",
    "UserOutcome",
    "default_jobs",
    "load_user_list",
    "preflight",
    "process_user",
    "run_batch",
]
