"""Every node of an installation signs with one secret: a node started with another one is refused.

Access tokens, presigned URLs and share-link grants are signed with ``secret_key``. Several nodes that
share a database but not the key would each reject what the others signed — users would see random
401s depending on which node the load balancer picked. So the first start records a fingerprint of
the key in the instance row (an HMAC of a fixed label under the key: it reveals nothing of the key),
and each later start compares:

* on PostgreSQL (the engine several nodes share) a different key stops the start with a message that
  says what to do — give every node the same ``secret_key``; to change the key on purpose, stop every
  node and clear the fingerprint (``docs/deployment.md``);
* on SQLite (one machine) the new fingerprint is recorded and a warning logged: the key changed, so
  every session and presigned URL signed with the old one has ended.
"""

from __future__ import annotations

import hashlib
import hmac

from stowage.db.engine import Database
from stowage.observability.logging import get_logger
from stowage.system import repository

_LABEL = b"stowage: the secret every node of an installation shares (v1)"
# What an operator runs (every node stopped) to let the next start record a new key.
CLEAR_FINGERPRINT = "UPDATE instance SET secret_check = NULL"

log = get_logger("stowage.system")


class SecretMismatch(RuntimeError):
    """This node's secret key is not the one the other nodes of the installation use."""


def fingerprint(secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), _LABEL, hashlib.sha256).hexdigest()


async def check_shared_secret(database: Database, secret: str) -> None:
    """Record the secret's fingerprint on first start; afterwards refuse (PostgreSQL) or record a change
    (SQLite, with a warning). The instance row must exist (``SystemService.initialise``)."""
    mine = fingerprint(secret)
    async with database.transaction() as db:
        row = await repository.lock_instance(db)
        if row is None or row.secret_check == mine:
            return
        if row.secret_check is not None:
            if not database.is_sqlite:
                recorded = row.secret_check[:12]
                detail = (
                    "this node's secret_key is not the one the other nodes of this installation sign with "
                    f"(fingerprint {mine[:12]}…, recorded {recorded}…): give every node the same secret_key. "
                    f"To change the key on purpose, stop every node, run `{CLEAR_FINGERPRINT}` in the "
                    "database and start them with the new key."
                )
                log.error("start_refused", reason="secret_key_mismatch", detail=detail)  # one line, not a traceback
                raise SecretMismatch(detail)
            log.warning(
                "secret_key_changed",
                detail="sessions, presigned URLs and share-link grants signed with the old key have ended",
            )
        await repository.set_secret_check(db, mine)
