"""Running a migration over rows written as the schema was before it."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_over_history(before, write_history):
    """Migrate back to `before` (a list of (app, migration) targets), call
    `write_history(apps)` with the models as they were there (to write rows, or to read what
    a backward migration left), then migrate to the latest schema (also when it failed);
    returns what `write_history` returned."""
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        return write_history(executor.loader.project_state(before).apps)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
