"""``Keys``: namespaces per topic prefix, one hash tag per entity, no collisions between entities."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.projections.keys import DEFAULT_NAMESPACE, Keys


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (first ``{`` to the next ``}``, if non-empty)."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1 : end]


def conversation_keys(keys: Keys, tenant: str, conv: str) -> list[str]:
    return [
        keys.conversation(tenant, conv),
        keys.conversation_turns(tenant, conv),
        keys.conversation_decisions(tenant, conv),
        keys.conversation_fence(tenant, conv),
    ]


def tenant_keys(keys: Keys, tenant: str) -> list[str]:
    return [keys.tenant(tenant), keys.tenant_denials(tenant), keys.tenant_fence(tenant)]


def test_empty_prefix_uses_the_production_namespace() -> None:
    assert Keys.for_prefix("") == Keys(DEFAULT_NAMESPACE) == Keys()
    assert DEFAULT_NAMESPACE == "lf:rm:v1:"


def test_topic_prefix_gets_its_own_namespace() -> None:
    keys = Keys.for_prefix("t0123abcd.")
    assert keys.namespace == "lf:t0123abcd.rm:v1:"
    assert keys.conversation("acme", "c1") == "lf:t0123abcd.rm:v1:conv:{acme/c1}"
    assert keys.checkpoint("read-models") == "lf:t0123abcd.rm:v1:checkpoint:read-models"


def test_distinct_prefixes_never_share_a_key() -> None:
    a, b = Keys.for_prefix("ta."), Keys.for_prefix("tb.")
    assert set(conversation_keys(a, "acme", "c1") + tenant_keys(a, "acme")).isdisjoint(
        conversation_keys(b, "acme", "c1") + tenant_keys(b, "acme")
    )


def test_every_key_of_a_conversation_shares_the_tenant_slash_conversation_tag() -> None:
    assert {hash_tag(k) for k in conversation_keys(Keys(), "acme", "c1")} == {"acme/c1"}


def test_every_key_of_a_tenant_shares_the_tenant_tag() -> None:
    assert {hash_tag(k) for k in tenant_keys(Keys(), "acme")} == {"acme"}


def test_entity_keys_are_distinct_from_each_other() -> None:
    keys = conversation_keys(Keys(), "acme", "c1") + tenant_keys(Keys(), "acme")
    assert len(set(keys)) == len(keys)


_PLAIN_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(tenant=_PLAIN_ID, conv=_PLAIN_ID, prefix=st.sampled_from(["", "t1.", "tabc."]))
def test_plain_ids_keep_each_entity_in_one_slot(tenant: str, conv: str, prefix: str) -> None:
    keys = Keys.for_prefix(prefix)
    assert len({hash_tag(k) for k in conversation_keys(keys, tenant, conv)}) == 1
    assert len({hash_tag(k) for k in tenant_keys(keys, tenant)}) == 1


def test_conversations_of_different_tenants_never_share_a_key() -> None:
    keys = Keys()
    assert keys.conversation("a/b", "c") != keys.conversation("a", "b/c")


def test_tenant_with_braces_still_keeps_its_keys_in_one_slot() -> None:
    assert len({hash_tag(k) for k in tenant_keys(Keys(), "}x")}) == 1
