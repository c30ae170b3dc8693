"""The REST front end's dependencies, declared once for every controller (``app.py`` registers them).

Handlers ask for what they need by name — ``principal``, ``client``, ``files``, ``accounts``,
``runtime`` — and Litestar resolves only those. Protocol front ends (``protocols/<name>/``) have their
own entry points but reach the same ``Runtime``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from stowage.accounts.services import AccountServices, ClientInfo
from stowage.api.authn import provide_client, provide_principal
from stowage.files.services import FileServices
from stowage.policy import Principal
from stowage.runtime import Runtime

# The security requirement of every route that needs a caller (bearer access token or personal token).
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def provide_runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def provide_files(request: Request[Any, Any, Any]) -> FileServices:
    return provide_runtime(request).files


def provide_accounts(request: Request[Any, Any, Any]) -> AccountServices:
    return provide_runtime(request).accounts


DEPENDENCIES = {
    "runtime": Provide(provide_runtime, sync_to_thread=False),
    "principal": Provide(provide_principal),
    "client": Provide(provide_client),
    "files": Provide(provide_files, sync_to_thread=False),
    "accounts": Provide(provide_accounts, sync_to_thread=False),
}

Caller = NamedDependency[Principal | None]
Client = NamedDependency[ClientInfo]
Files = NamedDependency[FileServices]
Accounts = NamedDependency[AccountServices]
RuntimeDep = NamedDependency[Runtime]
