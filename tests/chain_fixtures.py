"""The chain tests' node: anvil with the test USDC deployed, started once per test session
(a plugin of tests/conftest.py), stopped by its pid; it also dies with the test run."""

import pytest

from billing_platform import sandbox_chain


@pytest.fixture(scope="session")
def anvil_chain(tmp_path_factory):
    """anvil on a free 127.0.0.1 port with the compiled test USDC and a funded payer. Skipped,
    saying why, only where npm (and so anvil) is missing."""
    reason = sandbox_chain.anvil_unavailable_reason()
    if reason:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("anvil")
    chain = sandbox_chain.setup_sandbox_chain(log_path=directory / "anvil.log")
    yield chain
    chain.stop()
