"""The use cases, written against ports only."""

from policy_core.ports import DecisionRecord, Page, PolicyRecord, RevisionInfo
from policy_core.services.api_key_service import ApiKeyService, hash_api_key
from policy_core.services.decision_chain import (
    ChainProblem,
    ChainReport,
    ChainVerifier,
    ChainWriter,
    verify_records,
)
from policy_core.services.decision_history_service import DecisionHistoryService
from policy_core.services.evaluation_service import (
    EvaluationService,
    ServiceResponseStream,
    canonical_json,
    context_digest,
    with_digest,
)
from policy_core.services.holder import EngineHolder
from policy_core.services.policy_service import PolicyService
from policy_core.services.records import (
    EvaluationRequest,
    EvaluationResult,
    ResponseEvaluationRequest,
    Settlement,
    response_record_id,
)
from policy_core.services.summary import summarize_change
from policy_core.services.usage_service import UsageService

__all__ = [
    "ApiKeyService",
    "ChainProblem",
    "ChainReport",
    "ChainVerifier",
    "ChainWriter",
    "DecisionHistoryService",
    "DecisionRecord",
    "EngineHolder",
    "EvaluationRequest",
    "EvaluationResult",
    "EvaluationService",
    "Page",
    "PolicyRecord",
    "PolicyService",
    "ResponseEvaluationRequest",
    "RevisionInfo",
    "ServiceResponseStream",
    "Settlement",
    "UsageService",
    "canonical_json",
    "context_digest",
    "hash_api_key",
    "response_record_id",
    "summarize_change",
    "verify_records",
    "with_digest",
]
