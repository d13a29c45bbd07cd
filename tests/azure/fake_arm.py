"""The ARM side of workspace creation, as `Workspace.create` drives it.

Served for `FakeAzure` on management.azure.com:
- `GET /subscriptions/S/providers/Microsoft.MachineLearningServices`: the resource provider
  (registered, with the regions it offers workspaces in);
- template deployments (`PUT .../resourcegroups/G/providers/Microsoft.Resources/deployments/D`,
  its GET and operation status): the template's resources are read the way ARM would create
  them: the storage account becomes a fake account with a key, the workspace becomes a
  `Workspace` of the fake with its default datastore; key vault and application insights are
  kept as plain records (the SDK reads nothing of them beyond their ids);
- dependent resources the SDK reads back (storage account get / keys).

Routes are a table like the run history's (`ArmDeployments.ROUTES`).
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_service import Call, FakeAzure

Response = tuple[int, dict[str, str], bytes]

PROVIDER_API_VERSIONS = {"2019-07-01", "2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01",
                         "2025-04-01"}
REGIONS = ["West Europe", "North Europe", "East US", "East US 2", "West US 2",
           "Southeast Asia", "UK South"]


class ArmDeployments:
    """Resource provider registration and template deployments of one subscription."""

    ROUTES: list[tuple[str, str, str]] = [
        ("GET", r"/providers/Microsoft\.MachineLearningServices", "_ml_provider"),
        ("GET", r"/providers/Microsoft\.Resources/deployments", "_subscription_deployments"),
        ("GET", r"/resourceGroups/([^/]+)/providers/Microsoft\.MachineLearningServices"
                r"/workspaces", "_workspaces_in_group"),
        ("PUT", r"/resourcegroups/([^/]+)/providers/Microsoft\.Resources/deployments/([^/]+)",
         "_deployment_put"),
        ("GET", r"/resourcegroups/([^/]+)/providers/Microsoft\.Resources/deployments/([^/]+)",
         "_deployment_get"),
        ("GET", r"/resourcegroups/([^/]+)/providers/Microsoft\.Resources/deployments/([^/]+)"
                r"/operationStatuses/([^/]+)", "_deployment_status"),
        ("GET", r"/resourcegroups/([^/]+)(?:/providers/Microsoft\.Resources)?/deployments/"
                r"([^/]+)/operations", "_deployment_operations"),
    ]

    def __init__(self, service: FakeAzure) -> None:
        self.service = service
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.resources: dict[str, dict[str, Any]] = {}  # arm id (lower) -> resource body

    def reset(self) -> None:
        self.deployments.clear()
        self.resources.clear()

    def handle(self, call: Call, rest: str) -> Response | None:
        """Route `rest` (the path after /subscriptions/S); None when no route matches."""
        for method, pattern, handler in self.ROUTES:
            m = re.fullmatch(pattern, rest, re.I)
            if m and method == call.method:
                return getattr(self, handler)(call, *[urllib.parse.unquote(g)
                                                      for g in m.groups()])
        return None

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return self.service._json(status, obj, headers)

    # -- provider ------------------------------------------------------------------------------

    def _ml_provider(self, call: Call) -> Response:
        self.service._api_version(call, PROVIDER_API_VERSIONS)
        sub = self.service.subscription_id
        types = [{"resourceType": t, "locations": REGIONS,
                  "apiVersions": ["2023-04-01", "2022-05-01"]}
                 for t in ("workspaces", "workspaces/computes", "operations")]
        return self._json(200, {
            "id": f"/subscriptions/{sub}/providers/Microsoft.MachineLearningServices",
            "namespace": "Microsoft.MachineLearningServices",
            "registrationState": "Registered", "registrationPolicy": "RegistrationRequired",
            "resourceTypes": types})

    # -- deployments ---------------------------------------------------------------------------

    def _workspaces_in_group(self, call: Call, rg: str) -> Response:
        from fake_service import WORKSPACE_API_VERSIONS

        self.service._api_version(call, WORKSPACE_API_VERSIONS)
        self.service._resource_group_record(rg)
        found = [self.service._workspace_body(ws) for ws in self.service.workspaces.values()
                 if ws.resource_group.lower() == rg.lower()]
        return self._json(200, {"value": found})

    def _subscription_deployments(self, call: Call) -> Response:
        return self._json(200, {"value": []})  # resource groups are created directly here

    def _deployment_id(self, rg: str, name: str) -> str:
        return (f"/subscriptions/{self.service.subscription_id}/resourceGroups/{rg}"
                f"/providers/Microsoft.Resources/deployments/{name}")

    def _deployment_body(self, rg: str, name: str) -> dict[str, Any]:
        dep = self.deployments[(rg.lower(), name.lower())]
        return {"id": self._deployment_id(rg, name), "name": name,
                "type": "Microsoft.Resources/deployments",
                "properties": {"provisioningState": dep["state"], "mode": "Incremental",
                               "timestamp": dep["timestamp"], "outputs": {},
                               "outputResources": [{"id": i} for i in dep["created"]],
                               "error": dep.get("error")}}

    def _deployment_put(self, call: Call, rg: str, name: str) -> Response:
        from fake_service import ServiceError, utcnow

        if rg not in self.service.resource_groups and rg.lower() not in {
                k.lower() for k in self.service.resource_groups}:
            raise ServiceError(404, "ResourceGroupNotFound",
                               f"Resource group '{rg}' could not be found.")
        body = call.json() or {}
        props = body.get("properties") or {}
        template = props.get("template") or {}
        parameters = {k: (v or {}).get("value") for k, v in
                      (props.get("parameters") or {}).items()}
        created = [self._deploy_resource(rg, res, parameters)
                   for res in template.get("resources") or []]
        op = str(uuid.uuid4())
        self.deployments[(rg.lower(), name.lower())] = {
            "state": "Succeeded", "timestamp": utcnow(), "created": created, "op": op}
        status_url = (f"https://management.azure.com{self._deployment_id(rg, name)}"
                      f"/operationStatuses/{op}?api-version=2021-04-01")
        out = self._deployment_body(rg, name)
        out["properties"]["provisioningState"] = "Accepted"
        return self._json(201, out, {"Azure-AsyncOperation": status_url, "Retry-After": "0"})

    def _deployment_get(self, call: Call, rg: str, name: str) -> Response:
        from fake_service import ServiceError

        if (rg.lower(), name.lower()) not in self.deployments:
            raise ServiceError(404, "DeploymentNotFound", f"Deployment '{name}' could not be "
                               "found.")
        return self._json(200, self._deployment_body(rg, name))

    def _deployment_status(self, call: Call, rg: str, name: str, op: str) -> Response:
        dep = self.deployments.get((rg.lower(), name.lower()))
        return self._json(200, {"status": dep["state"] if dep else "Failed"})

    def _deployment_operations(self, call: Call, rg: str, name: str) -> Response:
        return self._json(200, {"value": []})

    @staticmethod
    def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
        """`[parameters('x')]` as ARM evaluates it; other expressions are kept as text."""
        if isinstance(value, str):
            m = re.fullmatch(r"\[parameters\('([^']+)'\)\]", value)
            if m:
                return parameters.get(m.group(1))
        return value

    def _deploy_resource(self, rg: str, res: dict[str, Any], parameters: dict[str, Any]) -> str:
        kind = str(res.get("type") or "")
        name = str(self._resolve(res.get("name"), parameters))
        location = self._resolve(res.get("location"), parameters) or "westeurope"
        sub = self.service.subscription_id
        arm_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{kind}/{name}"
        if kind.lower() == "microsoft.storage/storageaccounts":
            self.service.add_storage_account(name, [])
        elif kind.lower() == "microsoft.machinelearningservices/workspaces":
            tags = {k: str(self._resolve(v, parameters)) for k, v in
                    (self._resolve(res.get("tags"), parameters) or {}).items()}
            self.service.add_workspace(rg, name, location=str(location).replace(" ", "")
                                       .lower(), tags=tags)
        self.resources[arm_id.lower()] = {"id": arm_id, "name": name, "type": kind,
                                          "location": location}
        return arm_id
