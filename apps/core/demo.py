"""Demo data seeders for `make run`: each app that has demo data lists its function here.

A seeder takes the demo merchant's live and sandbox rows and must be idempotent. It may
return lines to print, in which <BASE_URL> and <SANDBOX_KEY> are filled in.
"""

from importlib import import_module

SEEDERS: list[str] = ["apps.catalog.demo.seed", "apps.usage.demo.seed", "apps.apikeys.demo.seed"]


def demo_seeders():
    result = []
    for dotted in SEEDERS:
        module, _, name = dotted.rpartition(".")
        result.append(getattr(import_module(module), name))
    return result
