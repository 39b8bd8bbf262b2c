"""Fast inserts of many model rows with PostgreSQL's COPY.

Django's bulk_create prepares every value of every field in Python, which dominates
the cost of writing a 1,000-event usage batch. COPY sends the rows as they are: the
attribute values of already-built instances (defaults, including UUID keys, are set
when an instance is built; auto_now fields are stamped here). Triggers and
constraints apply as for INSERT; a violation aborts the statement as usual.
"""

from django.db import connection, models
from django.utils import timezone
from psycopg.types.json import Jsonb


def copy_insert(objs: list[models.Model]) -> None:
    if not objs:
        return
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields]
    now = timezone.now()
    for field in fields:
        if isinstance(field, models.DateTimeField) and (field.auto_now or field.auto_now_add):
            for obj in objs:
                if getattr(obj, field.attname) is None or field.auto_now:
                    setattr(obj, field.attname, now)
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    attnames = [f.attname for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    # wrap_database_errors turns psycopg's errors into Django's (IntegrityError, ...).
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for obj in objs:
            copy.write_row(
                [Jsonb(getattr(obj, name)) if name in json_fields else getattr(obj, name) for name in attnames]
            )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
