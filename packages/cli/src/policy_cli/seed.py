"""Loading a directory of policies into an empty store (first start of `make run`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from policy_core.errors import PolicyAlreadyExists
from policy_core.language import load_policies
from policy_core.services import PolicyService

__all__ = ["policy_files", "seed_if_empty"]

_log = logging.getLogger(__name__)
_SUFFIXES = (".yaml", ".yml", ".json")


def policy_files(root: Path) -> list[Path]:
    """The policy files of a file or a directory tree, sorted."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)


async def seed_if_empty(service: PolicyService, root: Path) -> int:
    """Create every policy found under `root` when the store holds none; returns the count.

    Only an empty store is seeded, so a restart never resurrects a policy an
    operator deleted. The whole set is validated first (PolicyLoadError: nothing stored;
    it rejects an id twice in the set). Instances starting together on one empty store
    (the HTTP and gRPC servers, replicas) may all find it empty: a policy another one
    created in the meantime is left as it is and not counted, instead of failing the start.
    """
    if (await service.list(limit=1)).items:
        return 0
    files = policy_files(root)
    load_policies([str(f) for f in files])  # every problem at once, before any write
    created = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        policies = load_policies(str(path))
        # One document keeps its text (comments, layout) as the stored revision;
        # the documents of a multi-document file are stored one by one as JSON.
        texts = [text] if len(policies) == 1 else [json.dumps(p.source) for p in policies]
        for item in texts:
            try:
                await service.create(item, author="seed", file=str(path))
            except PolicyAlreadyExists as exc:
                _log.info(
                    "policy %r was created meanwhile (another instance seeding)", exc.policy_id
                )
                continue
            created += 1
    _log.info("seeded %d policies from %s", created, root)
    return created
