import importlib
import sys

from django.apps import AppConfig

# py_ecc (imported by eth-account and web3) raises the interpreter's recursion limit to 100,000
# when it is first imported. The JSON parser relies on the limit to refuse deeply nested bodies
# with a RecursionError (a 400): at 100,000 a body of nested brackets overflows the C stack and
# kills the process instead. It is imported here, once, and the limit put back to CPython's
# default (whichever came first: this or the library's import).
LIBRARIES_RAISING_THE_RECURSION_LIMIT = ("py_ecc",)
RECURSION_LIMIT = 1000


def keep_recursion_limit() -> None:
    for name in LIBRARIES_RAISING_THE_RECURSION_LIMIT:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    if sys.getrecursionlimit() > RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        keep_recursion_limit()
