"""``ledgerflow policy publish|validate|list|diff``: rule packs from files and from ``policy.rules``.

``validate`` runs the checks publishing runs, offline. ``list`` and ``diff`` read the
published versions back from ``policy.rules`` (the same catalog as ``GET /v1/policy/packs``).
"""

from __future__ import annotations

import asyncio
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerflow.config import Settings
from ledgerflow.errors import ValidationError

DEFAULT_TENANT = "*"


@dataclass(frozen=True, slots=True)
class PackFile:
    path: str
    document: dict[str, Any]


def read_pack_file(path: str, tenant: str | None) -> PackFile:
    """The rule pack document in ``path`` (JSON, or YAML by extension), ``tenant`` overriding its own."""
    from ledgerflow.policy.validation import parse_rule_pack_text

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file; give the path of a JSON or YAML rule pack") from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a directory; give the path of a JSON or YAML rule pack") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text; a rule pack is JSON or YAML") from None
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read it ({exc.strerror})") from None
    fmt = "yaml" if path.endswith((".yaml", ".yml")) else "json"
    document = parse_rule_pack_text(text, fmt=fmt)
    if not isinstance(document, dict):
        raise ValidationError(
            f"{path}: a rule pack is a {fmt.upper()} object, not a {type(document).__name__}"
        )
    if tenant:
        document["tenant"] = tenant
    return PackFile(path, document)


def publish(settings: Settings, path: str, tenant: str | None) -> dict[str, Any]:
    from ledgerflow.rulepacks import publish_pack

    document = dict(read_pack_file(path, tenant).document)
    document.pop("version", None)
    published = asyncio.run(publish_pack(settings, document, producer_name="cli"))
    return {
        "tenant": published.tenant,
        "version": published.version,
        "constitution_hash": published.constitution_hash,
        "offset": published.offset,
    }


def validate(path: str, tenant: str | None) -> dict[str, Any]:
    """What publishing would check, nothing published; ValidationError (one line) when invalid."""
    from ledgerflow.policy import load_rule_pack

    document = dict(read_pack_file(path, tenant).document)
    document.pop("version", None)
    pack = load_rule_pack(document)
    return {
        "valid": True,
        "tenant": pack.tenant,
        "rules": len(document.get("rules", [])),
        "constitution_hash": pack.constitution_hash,
    }


def versions(settings: Settings, tenant: str) -> list[dict[str, Any]]:
    """Every published version of ``tenant``'s pack, newest first, each with its document and
    its verdict against the policy trust store, as ``GET /v1/policy/packs`` gives it (``signer_kid``,
    or ``refused`` with the agents' reason code)."""
    from ledgerflow.api.rulepack_catalog import catalog, read_policy_events
    from ledgerflow.kafka.policy_trust import PolicyTrust

    events = asyncio.run(read_policy_events(settings))
    return [
        {**p.summary(), "document": p.document}
        for p in catalog(events, tenant, PolicyTrust.of(settings).lookup)
    ]


def pick(found: list[dict[str, Any]], version: int | None, tenant: str) -> dict[str, Any]:
    """Version ``version`` (None: the newest) of a newest-first list."""
    if not found:
        raise ValidationError(
            f"tenant {tenant!r} has no published rule pack; `ledgerflow policy publish FILE` adds one"
        )
    if version is None:
        return found[0]
    for item in found:
        if item["version"] == version:
            return item
    have = ", ".join(str(item["version"]) for item in reversed(found))
    raise ValidationError(f"tenant {tenant!r} has no rule pack version {version}; published: {have}")


def comparable(document: dict[str, Any]) -> list[str]:
    """A document as sorted, indented JSON lines, without the fields a publication sets."""
    shown = {k: v for k, v in document.items() if k != "version"}
    return json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def diff_lines(old: dict[str, Any], new: dict[str, Any], old_name: str, new_name: str) -> list[str]:
    """A unified diff of two rule packs; empty when they are the same pack."""
    return list(difflib.unified_diff(comparable(old), comparable(new), old_name, new_name, lineterm=""))


def format_list(items: list[dict[str, Any]], tenant: str) -> str:
    if not items:
        return f"no rule pack published for tenant {tenant!r}"
    rows = [f"{'version':>7}  {'published_at':<27}  {'by':<16}  {'rules':>5}  constitution_hash"]
    for item in items:
        rows.append(
            f"{item['version']:>7}  {item['published_at']:<27}  {item['published_by'][:16]:<16}  "
            f"{item['rules']:>5}  {item['constitution_hash']}"
        )
    return "\n".join(rows)
