"""wmproxy's reference configs (shared/wmproxy-ref/config of the project's
shared folder: /work/shared, or next to the checkout). REF is that folder,
or None without it; tests that read it carry @need_ref and skip then."""

import os

import pytest

_E2E = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = next((d for d in ("/work/shared/wmproxy-ref/config",
                        os.path.join(_E2E, "../../../shared/wmproxy-ref/config"))
            if os.path.isdir(d)), None)
need_ref = pytest.mark.skipif(REF is None, reason="wmproxy's reference configs not found")


def ref_file(name):
    """The path of one reference config (REF must be set)."""
    return os.path.join(REF, name)
