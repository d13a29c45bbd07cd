"""HTTP requests per plan on the azure backend: grow with kinds, not resources.

    python bench/azure_requests.py

The real azureml SDK runs against the project's fake Azure (tests/azure/fake_service.py,
started here on loopback, with Azurite as the workspaces' blob storage; only the network
edge is replaced; runs go to the in-memory history double). Every HTTP request the SDKs
send is counted. A stack of 1 cluster, datastore, upload and run (the baseline) and one of
50 clusters, 20 datastores, 10 uploads and 10 runs are applied, then planned with nothing to
change, counting the requests of the plan. Target: the big plan makes no request per
resource beyond the listing of each upload's files, i.e. at most the baseline plus one
request per extra upload. Needs the azure extra (azureml-sdk) and Azurite (`npm ci`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "azure")]

SIZES = {"baseline": dict(computes=1, datastores=1, uploads=1, runs=1),
         "big": dict(computes=50, datastores=20, uploads=10, runs=10)}


def main() -> None:
    from azurite import ACCOUNT, ACCOUNT_KEY, azurite_container, start_azurite
    from fake_service import (
        TEST_SUBSCRIPTION,
        FakeAzure,
        make_certificate,
        make_token,
        route_hosts,
    )

    with tempfile.TemporaryDirectory(prefix="amlctl-bench-azure-") as tmp:
        work = Path(tmp)
        cert, key = make_certificate(work / "tls")
        home = work / "home"
        (home / ".azure").mkdir(parents=True)
        os.environ.update({"HOME": str(home), "AZURE_CONFIG_DIR": str(home / ".azure"),
                           "REQUESTS_CA_BUNDLE": str(cert), "SSL_CERT_FILE": str(cert),
                           "NO_PROXY": "*", "AZURE_SUBSCRIPTION_ID": TEST_SUBSCRIPTION})
        azurite = start_azurite(work, cert, key)
        fake = FakeAzure(subscription_id=TEST_SUBSCRIPTION)
        fake.start(cert, key)
        fake.default_storage = (ACCOUNT, ACCOUNT_KEY, lambda name: azurite_container(
            azurite, cert, ACCOUNT, ACCOUNT_KEY, name))
        try:
            with route_hosts(fake.port, azurite.port):
                from amlctl.providers.azure import sdk

                sdk.load()
                from azureml.core.authentication import TokenAuthentication

                auth = TokenAuthentication(lambda audience: make_token(str(audience)),
                                           cloud="AzureCloud")
                counted = {}
                for label, sizes in SIZES.items():
                    fake.reset()
                    counted[label] = plan_requests(work / label, fake, auth, sizes)
        finally:
            fake.stop()
            azurite.stop()
    base, big = counted["baseline"], counted["big"]
    for label in SIZES:
        resources = sum(SIZES[label].values())
        total = sum(counted[label].values())
        print(f"{label}: {resources} resources ({SIZES[label]}): {total} requests per plan, "
              f"{total / resources:.2f} per resource")
        for kind, n in sorted(counted[label].items()):
            print(f"    {n:4d}  {kind}")
    extra_uploads = SIZES["big"]["uploads"] - SIZES["baseline"]["uploads"]
    target = sum(base.values()) + extra_uploads
    print(f"big / baseline: {sum(big.values()) / sum(base.values()):.2f}x requests for "
          f"{sum(SIZES['big'].values()) / sum(SIZES['baseline'].values()):.0f}x resources; "
          f"target <= baseline + 1 listing per extra upload = {target}: "
          f"{'ok' if sum(big.values()) <= target else 'MISSED'}")


def plan_requests(folder: Path, fake: Any, auth: Any, sizes: dict[str, int]) -> Counter[str]:
    from history_double import HistoryDouble
    from scale_manifest import STACK, noop_plan_requests

    from amlctl.providers.azure.computes import ComputeSettings
    from amlctl.providers.azure.provider import AzureProvider
    from amlctl.providers.azure.retry import RetryPolicy

    history = HistoryDouble()  # the runs the apply submitted, seen again by the plan

    def make_provider(workspace: dict[str, Any], state: Path) -> AzureProvider:
        return AzureProvider(workspace, STACK, state, auth=auth, cloud="AzureCloud",
                             run_service=history, policy=RetryPolicy(sleep=lambda _s: None),
                             compute_settings=ComputeSettings(sleep=lambda _s: None))

    return noop_plan_requests(folder, fake, "azure", make_provider, os.environ.__setitem__,
                              **sizes)


if __name__ == "__main__":
    main()
