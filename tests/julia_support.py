"""Skip or fail: the one rule for every test that needs Julia.

Skip only when Julia is truly absent (:class:`JuliaUnavailableError`: no executable, or juliacall
not installed), printing why; ``TAYNODE_REQUIRE_JULIA=1`` turns that skip into a failure, for a
CI that has Julia. A Julia that is present but broken raises :class:`JuliaBackendError`, which
is never caught here, so the test fails with the Julia error in its message.
"""

import os

import pytest


def julia_backend_or_skip():
    from taynode.backends import get_backend
    from taynode.backends.julia_backend import JuliaUnavailableError

    try:
        return get_backend("julia")
    except JuliaUnavailableError as e:
        if os.environ.get("TAYNODE_REQUIRE_JULIA") == "1":
            pytest.fail(f"TAYNODE_REQUIRE_JULIA=1, but: {e}", pytrace=False)
        pytest.skip(str(e))
