"""Tests only: makes a child `python -m amlctl ...` process reach the fake Azure service.

Put this folder on the child's PYTHONPATH and set FAKE_AZURE_PORT (and FAKE_AZURITE_PORT):
Azure host names then resolve to the fake on 127.0.0.1, blob hosts to Azurite (certificate
trusted through REQUESTS_CA_BUNDLE / SSL_CERT_FILE, set by the test), and any connection to a
non-loopback address is refused.
Refused addresses are appended to the file named by FAKE_AZURE_REFUSED, so the test can
assert that none was attempted. Without FAKE_AZURE_PORT this module does nothing.
"""

import atexit
import os
import sys

_port = os.environ.get("FAKE_AZURE_PORT")
if _port:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fake_service import route_hosts

    _blob_port = os.environ.get("FAKE_AZURITE_PORT")
    _routing = route_hosts(int(_port), int(_blob_port) if _blob_port else None)
    _refused = _routing.__enter__()  # for the life of the process

    def _report() -> None:
        target = os.environ.get("FAKE_AZURE_REFUSED")
        if _refused and target:
            with open(target, "a", encoding="utf-8") as out:
                for family, address in _refused:
                    out.write(f"{family} {address!r}\n")

    atexit.register(_report)

_trace = os.environ.get("FAKE_AZURE_TRACE")
if _port and _trace:
    # One line per HTTP exchange (`METHOD URL -> STATUS`), so a test can wait on a condition
    # such as "this runner has tried to take the lease" instead of sleeping.
    import requests.adapters

    _send = requests.adapters.HTTPAdapter.send

    def _traced_send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = _send(self, request, *args, **kwargs)
        with open(_trace, "a", encoding="utf-8") as out:
            out.write(f"{request.method} {request.url} -> {response.status_code}\n")
        return response

    requests.adapters.HTTPAdapter.send = _traced_send  # type: ignore[method-assign]
