"""apps.core stands below every domain app: it imports none of them."""

import ast
from pathlib import Path

import apps.core

CORE = Path(apps.core.__file__).parent
# apps/core/api.py still reads the API key through apps.merchants; it is being moved out.
NOT_YET_MOVED = {"api.py"}


def domain_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [name for name in names if name.startswith("apps.") and not name.startswith("apps.core")]


def test_core_imports_no_domain_app():
    found = {
        str(path.relative_to(CORE)): domain_imports(path)
        for path in sorted(CORE.rglob("*.py"))
        if path.name not in NOT_YET_MOVED
    }
    assert {name: imports for name, imports in found.items() if imports} == {}


def test_the_check_sees_an_import_of_a_domain_app(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from apps.merchants.models import Merchant\nimport apps.ledger.services\n")
    assert domain_imports(module) == ["apps.merchants.models", "apps.ledger.services"]
