"""The policy's grant rules, without I/O: what a share lets a recipient or a link visitor do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stowage.errors import NotFound, PermissionDenied
from stowage.policy import (
    Action,
    CredentialKind,
    Grant,
    Owned,
    Permission,
    Principal,
    Role,
    Scope,
    authorize,
)
from stowage.sharing.services import grant_is_valid, sign_grant

ALL = frozenset({Scope.READ, Scope.WRITE})


def user(user_id: str = "bob", scopes: frozenset[Scope] = ALL) -> Principal:
    return Principal(user_id=user_id, role=Role.USER, scopes=scopes, kind=CredentialKind.SESSION, credential_id="s")


def link(share_id: str = "L1") -> Principal:
    return Principal(
        user_id="",
        role=Role.USER,
        scopes=ALL,
        kind=CredentialKind.SHARE_LINK,
        credential_id=share_id,
        share_id=share_id,
    )


def node(*grants: Grant, node_id: str = "n1", detaches: bool = False) -> Owned:
    return Owned(owner_id="alice", node_id=node_id, grants=grants, detaches=detaches)


def grant(permission: Permission, root_id: str = "n1", share_id: str = "S1") -> Grant:
    return Grant(share_id=share_id, root_id=root_id, permission=permission)


def test_without_a_grant_someone_elses_node_does_not_exist() -> None:
    for action in (Action.FILE_READ, Action.FILE_WRITE, Action.SHARE_READ):
        with pytest.raises(NotFound):
            authorize(user(), action, node())


def test_a_read_share_reads_and_refuses_writes_with_403() -> None:
    assert authorize(user(), Action.FILE_READ, node(grant(Permission.READ, root_id="top"))).user_id == "bob"
    with pytest.raises(PermissionDenied, match="read-only"):
        authorize(user(), Action.FILE_WRITE, node(grant(Permission.READ, root_id="top")))


def test_a_read_write_share_writes_inside_but_never_detaches_the_shared_node() -> None:
    inside = node(grant(Permission.READ_WRITE, root_id="top"), detaches=True)
    authorize(user(), Action.FILE_WRITE, inside)  # moving or deleting something inside the share
    authorize(user(), Action.FILE_WRITE, node(grant(Permission.READ_WRITE)))  # uploading into the shared folder
    with pytest.raises(PermissionDenied, match="shared item itself"):
        authorize(user(), Action.FILE_WRITE, node(grant(Permission.READ_WRITE), detaches=True))


def test_a_wider_grant_on_an_ancestor_lets_the_inner_shared_node_move() -> None:
    both = node(grant(Permission.READ_WRITE), grant(Permission.READ_WRITE, root_id="top", share_id="S2"), detaches=True)
    authorize(user(), Action.FILE_WRITE, both)


def test_grants_never_allow_managing_shares() -> None:
    for permission in (Permission.READ, Permission.READ_WRITE):
        with pytest.raises(PermissionDenied, match="Only the owner"):
            authorize(user(), Action.SHARE_WRITE, node(grant(permission)))


def test_the_scope_still_applies_to_a_recipient() -> None:
    with pytest.raises(PermissionDenied, match="scope"):
        authorize(user(scopes=frozenset({Scope.READ})), Action.FILE_WRITE, node(grant(Permission.READ_WRITE)))


def test_a_drop_link_adds_to_its_folder_and_sees_nothing() -> None:
    visitor = link("S1")
    authorize(visitor, Action.FILE_WRITE, node(grant(Permission.DROP)))
    with pytest.raises(NotFound):
        authorize(visitor, Action.FILE_READ, node(grant(Permission.DROP)))
    with pytest.raises(NotFound):  # a subfolder of a drop folder is not a place to add to
        authorize(visitor, Action.FILE_WRITE, node(grant(Permission.DROP, root_id="top")))


def test_a_link_bearer_reaches_only_through_its_own_link() -> None:
    with pytest.raises(NotFound):
        authorize(link("L1"), Action.FILE_READ, node(grant(Permission.READ, share_id="OTHER")))
    authorize(link("L1"), Action.FILE_READ, node(grant(Permission.READ, share_id="L1")))
    with pytest.raises(PermissionDenied):
        authorize(link("L1"), Action.FILE_WRITE, node(grant(Permission.READ, share_id="L1")))


def test_a_link_bearer_owns_nothing_even_a_node_with_an_empty_owner() -> None:
    with pytest.raises(NotFound):
        authorize(link(), Action.FILE_READ, Owned(owner_id="", node_id="n1"))


def test_the_owner_and_an_administrator_need_no_grant() -> None:
    authorize(user("alice"), Action.SHARE_WRITE, node())
    admin = Principal(
        user_id="root",
        role=Role.ADMIN,
        scopes=frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
        kind=CredentialKind.SESSION,
        credential_id="a",
    )
    authorize(admin, Action.FILE_WRITE, node(detaches=True))


# --- the grant a link's password unlocks ---------------------------------------------------------


def test_a_grant_holds_for_its_link_and_password_until_it_expires() -> None:
    secret = "s" * 48
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    grant = sign_grant(secret, "share-1", "$argon2id$hash-1", now + timedelta(minutes=5))

    assert grant_is_valid(secret, grant, "share-1", "$argon2id$hash-1", now)
    assert not grant_is_valid(secret, grant, "share-1", "$argon2id$hash-1", now + timedelta(minutes=5))
    assert not grant_is_valid(secret, grant, "share-2", "$argon2id$hash-1", now)
    assert not grant_is_valid(secret, grant, "share-1", "$argon2id$hash-2", now)
    assert not grant_is_valid("t" * 48, grant, "share-1", "$argon2id$hash-1", now)
    version, share, expires, mac = grant.split(".")
    later = str(int(expires) + 3600)
    assert not grant_is_valid(secret, f"{version}.{share}.{later}.{mac}", "share-1", "$argon2id$hash-1", now)
    for broken in (None, "", "g1.share-1", f"g2.{share}.{expires}.{mac}", f"{version}.{share}.soon.{mac}"):
        assert not grant_is_valid(secret, broken, "share-1", "$argon2id$hash-1", now)


def test_the_trash_is_the_owners_alone() -> None:
    """What a read_write recipient deleted is a 404 for them (restore, purge), and not for the owner."""
    trashed = Owned(
        owner_id="alice", node_id="n1", grants=(grant(Permission.READ_WRITE, root_id="top"),), in_trash=True
    )
    for action in (Action.FILE_READ, Action.FILE_WRITE):
        with pytest.raises(NotFound):
            authorize(user(), action, trashed)
    assert authorize(user("alice"), Action.FILE_WRITE, trashed).user_id == "alice"
