"""The agent's TypedDicts (trapsapi.wire) must match the pydantic contract (trapsapi.models)."""

from __future__ import annotations

import typing

import pytest

from trapsapi import (
    models,
    models_actions,
    models_forensics,
    models_hashes,
    models_lifecycle,
    wire,
    wire_actions,
)

PAIRS = [
    (wire.ModuleState, models.ModuleState),
    (wire.Footprint, models.Footprint),
    (wire.EnrollRequest, models.EnrollRequest),
    (wire.EnrollResponse, models.EnrollResponse),
    (wire.CheckinRequest, models.CheckinRequest),
    (wire.ModulePolicy, models.ModulePolicy),
    (wire.AgentSettingsPolicy, models.AgentSettingsPolicy),
    (wire.ForensicsPolicy, models.ForensicsPolicy),
    (wire.AgentPolicy, models.AgentPolicy),
    (wire.CheckinResponse, models.CheckinResponse),
    (wire.SecurityEvent, models.SecurityEvent),
    (wire.EventBatch, models.EventBatch),
    (wire.EventAck, models.EventAck),
    (wire.RotatedSecret, models_lifecycle.RotatedSecret),
    (wire.AgentAnalysis, models_hashes.AgentAnalysis),
    (wire.AgentVerdictQuery, models_hashes.AgentVerdictQuery),
    (wire.AgentVerdicts, models_hashes.AgentVerdicts),
    (wire_actions.ActionOrder, models_actions.ActionOrder),
    (wire_actions.ActionResult, models_actions.ActionResult),
    (wire_actions.ActionResultAck, models_actions.ActionResultAck),
    (wire_actions.LogUpload, models_actions.LogUpload),
    (wire_actions.LogUploadAck, models_actions.LogUploadAck),
    (wire_actions.ForensicUpload, models_forensics.ForensicUpload),
    (wire_actions.ForensicUploadAck, models_forensics.ForensicUploadAck),
]


@pytest.mark.parametrize(("typed", "model"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_wire_typeddict_has_the_fields_of_the_model(typed: type, model: type) -> None:
    assert set(typing.get_type_hints(typed)) == set(model.model_fields)  # type: ignore[attr-defined]


def test_a_wire_event_validates_against_the_model() -> None:
    event: wire.SecurityEvent = {
        "id": "0b0e4b7c-4a1b-4a51-9a1e-0f6f3f0f1a11",
        "time": "2026-11-29T05:00:00+00:00",
        "module": "malware",
        "severity": "high",
        "action": "prevented",
        "process_path": "/tmp/evil",
        "sha256": "a" * 64,
        "pid": 10,
        "ppid": 1,
        "parent_path": "/bin/bash",
        "user": "root",
        "uid": 0,
        "cmdline": "/tmp/evil --now",
        "details": {},
    }
    parsed = models.EventBatch.model_validate({"events": [event]})
    assert parsed.events[0].sha256 == "a" * 64


def test_unknown_fields_and_bad_hashes_are_rejected() -> None:
    with pytest.raises(ValueError, match="sha256"):
        models.SecurityEvent.model_validate(
            {
                "id": "0b0e4b7c-4a1b-4a51-9a1e-0f6f3f0f1a11",
                "time": "2026-11-29T05:00:00Z",
                "module": "malware",
                "severity": "high",
                "action": "prevented",
                "process_path": "/x",
                "sha256": "xyz",
            }
        )
    with pytest.raises(ValueError, match="extra"):
        models.TokenCreate.model_validate({"label": "x", "role": "superuser"})
