"""The OpenAPI 3.1 document of every HTTP endpoint (`GET /api/openapi.json`, function `openapi`).

Built from the same constants the handlers validate with (stages, diagnosis codes, page sizes,
the report's limits), so the document cannot drift from them; a test holds it against real
answers of the development host. Problem answers are RFC 9457 `application/problem+json`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from shared.discovery import GROUPS_MAX_PAGE_SIZE, RUNS_MAX_PAGE_SIZE
from shared.errors import PROBLEM_JSON
from shared.profiles import PROFILES_MAX_PAGE_SIZE, PROPERTY_CHECKS
from shared.reports import (
    DIAGNOSES,
    FRESH_SECONDS,
    INSTALL_CHART_DAYS,
    MAX_BODY_BYTES,
    MAX_PAGE_SIZE,
    STAGES,
)
from shared.settings import MAX_BUNDLE_TTL_MINUTES

JSON: Final = "application/json"
GUID_PATTERN: Final = "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
# RFC 3339 in UTC with Z: the one time format of every answer.
UTC_TIME: Final = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _problem(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _query(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_GUID: Final = {"type": "string", "pattern": GUID_PATTERN}
_DEVICE_PROOF: Final = {
    "name": "Device-Proof",
    "in": "header",
    "required": False,
    "description": (
        "A compact JWS (typ cmboot-device-proof+jwt, RS256 or PS256, x5c: the device's Entra "
        "ID certificate) with deviceId, htm, htu, iat, jti and, as the endpoint needs, nonce, "
        "ath and bodySha256. Required when BOOTSTRAP_AUTH is device or device+user; at most "
        "16 KiB."
    ),
    "schema": {"type": "string", "maxLength": 16384},
}
_ADMIN: Final[list[dict[str, list[str]]]] = [{"entraBearer": []}]
_DEVICE: Final[list[dict[str, list[str]]]] = [
    {"deviceProof": []},
    {"entraBearer": []},
    {"deviceProof": [], "entraBearer": []},
]
_ADMIN_ERRORS: Final = {"401": _problem("Unauthorized"), "403": _problem("Forbidden")}
_DEVICE_ERRORS: Final = {
    "400": _problem("BadRequest"),
    "401": _problem("Unauthorized"),
    "403": _problem("Forbidden"),
    "503": _problem("Unavailable"),
}
_PAGING: Final = [
    _query("next", {"type": "string"}, "The previous page's `next` token."),
    _query(
        "continuation",
        {"type": "string"},
        "Older name of `next`, still accepted.",
    ),
]


def _page_size(maximum: int, default: int) -> dict[str, Any]:
    return _query(
        "pageSize",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        "How many items a page holds at most.",
    )


def _paths() -> dict[str, Any]:
    return {
        "/api/bundle": {
            "get": {
                "operationId": "bundle",
                "summary": "A signed ccmsetup install-parameter bundle for the calling device.",
                "security": _DEVICE,
                "parameters": [
                    _query("deviceId", _GUID, "The device's Entra ID device id.", required=True),
                    _query(
                        "nonce",
                        {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,128}$"},
                        "Echoed in the bundle's `nonce` claim.",
                        required=True,
                    ),
                    _DEVICE_PROOF,
                ],
                "responses": {
                    "200": {
                        "description": (
                            "A compact JWS (typ cmboot-bundle+jwt, RS256, kid = RFC 7638 "
                            f"thumbprint), valid at most {MAX_BUNDLE_TTL_MINUTES} minutes."
                        ),
                        "headers": {"Cache-Control": {"schema": {"const": "no-store"}}},
                        "content": {"application/jose": {"schema": _ref("CompactJws")}},
                    },
                    **_DEVICE_ERRORS,
                },
            }
        },
        "/api/jwks": {
            "get": {
                "operationId": "jwks",
                "summary": "The bundle-signing public keys (current and, in a rotation, next).",
                "security": [],
                "responses": {"200": _json(_ref("Jwks"), "A JWK Set.")},
            }
        },
        "/api/jwks/signed": {
            "get": {
                "operationId": "jwksSigned",
                "summary": "The same JWK Set as a compact JWS signed by the current key.",
                "description": (
                    "typ cmboot-jwks+jwt, kid of the current signing key, claims keys, iat, "
                    "exp: a device that pins a key accepts a new set only when it verifies."
                ),
                "security": [],
                "responses": {
                    "200": {
                        "description": "A compact JWS.",
                        "content": {"application/jose": {"schema": _ref("CompactJws")}},
                    }
                },
            }
        },
        "/api/reports": {
            "post": {
                "operationId": "reports",
                "summary": "A device's status report, durably enqueued for recording.",
                "security": _DEVICE,
                "parameters": [_DEVICE_PROOF],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("StatusReport")}},
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["reportId"],
                            "properties": {"reportId": _GUID},
                        },
                        "Enqueued.",
                    ),
                    "413": _problem("PayloadTooLarge"),
                    **_DEVICE_ERRORS,
                },
            }
        },
        "/api/devices": {
            "get": {
                "operationId": "listDevices",
                "summary": "A page of the tenant's devices with their diagnosis, or a summary.",
                "description": (
                    "With a `diagnosis` filter a page may hold fewer than pageSize devices "
                    "while `next` is set: follow `next` until it is null."
                ),
                "security": _ADMIN,
                "parameters": [
                    _query("stage", {"enum": list(STAGES)}, "Only devices in this stage."),
                    _query("state", {"enum": list(STAGES)}, "Older name of `stage`."),
                    _query(
                        "diagnosis",
                        {"enum": list(DIAGNOSES)},
                        "Only devices with this diagnosis code.",
                    ),
                    _query("lastReportAtBefore", UTC_TIME, "Last report before this time."),
                    _query("lastReportAtAfter", UTC_TIME, "Last report at or after this time."),
                    _query(
                        "summary",
                        {"enum": ["stage", "overview"]},
                        "Counts instead of a page: by stage, or the console's fleet overview "
                        "(a snapshot with its asOf time, see Overview).",
                    ),
                    _page_size(MAX_PAGE_SIZE, 100),
                    *_PAGING,
                ],
                "responses": {
                    "200": _json(
                        {"anyOf": [_ref("DevicePage"), _ref("StageCounts"), _ref("Overview")]},
                        "A page, or the summary asked for.",
                    ),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/devices/{deviceId}": {
            "get": {
                "operationId": "getDevice",
                "summary": "One device: latest state, diagnosis, raw dsregcmd and a timeline.",
                "security": _ADMIN,
                "parameters": [
                    {"name": "deviceId", "in": "path", "required": True, "schema": _GUID}
                ],
                "responses": {
                    "200": _json(_ref("DeviceDetail"), "The device."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "404": _problem("NotFound"),
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/discovery/runs": {
            "get": {
                "operationId": "listDiscoveryRuns",
                "summary": "Discovery runs, newest first, with the progress of a running one.",
                "security": _ADMIN,
                "parameters": [_page_size(RUNS_MAX_PAGE_SIZE, 50), *_PAGING],
                "responses": {
                    "200": _json(_ref("RunsPage"), "A page of runs."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/groups": {
            "get": {
                "operationId": "listGroups",
                "summary": "Discovered Entra groups (DISCOVERY_GROUPS), in object id order.",
                "security": _ADMIN,
                "parameters": [
                    _page_size(GROUPS_MAX_PAGE_SIZE, 100),
                    _query("next", {"type": "string"}, "The previous page's `next` token."),
                ],
                "responses": {
                    "200": _json(_ref("GroupsPage"), "A page of groups."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/profiles": {
            "get": {
                "operationId": "listProfiles",
                "summary": "Install profiles, by name.",
                "security": _ADMIN,
                "parameters": [
                    _page_size(PROFILES_MAX_PAGE_SIZE, 100),
                    _query("next", {"type": "string"}, "The previous page's `next` token."),
                ],
                "responses": {
                    "200": _json(_ref("ProfilesPage"), "A page of profiles."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/profiles/resolve": {
            "get": {
                "operationId": "resolveProfile",
                "summary": "Which install profile a device or user gets, and through which "
                "groups; issues nothing.",
                "security": _ADMIN,
                "parameters": [
                    _query("deviceId", _GUID, "The device's Entra ID deviceId."),
                    _query("userId", _GUID, "The user's object id."),
                ],
                "responses": {
                    "200": _json(_ref("ProfileResolution"), "The applied profile and why."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/profiles/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                    "description": "The profile's name (not 'default' or 'resolve').",
                }
            ],
            "get": {
                "operationId": "getProfile",
                "summary": "One install profile.",
                "security": _ADMIN,
                "responses": {
                    "200": _json(_ref("Profile"), "The profile."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "404": _problem("NotFound"),
                    "503": _problem("Unavailable"),
                },
            },
            "put": {
                "operationId": "putProfile",
                "summary": "Create or replace an install profile; the resolved table follows.",
                "security": _ADMIN,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("ProfileBody")}},
                },
                "responses": {
                    "200": _json(_ref("Profile"), "The stored profile."),
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "415": _problem("UnsupportedMediaType"),
                    "503": _problem("Unavailable"),
                },
            },
            "delete": {
                "operationId": "deleteProfile",
                "summary": "Delete an install profile.",
                "security": _ADMIN,
                "responses": {
                    "204": {"description": "Deleted."},
                    "400": _problem("BadRequest"),
                    **_ADMIN_ERRORS,
                    "404": _problem("NotFound"),
                    "503": _problem("Unavailable"),
                },
            },
        },
        "/api/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness; an admin token also gets storage, settings and runs.",
                "security": [{}, {"entraBearer": []}],
                "responses": {
                    "200": _json(_ref("Health"), "Healthy."),
                    "503": _problem("Unavailable"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
            }
        },
        "/api/console": {
            "get": {
                "operationId": "console",
                "summary": "The admin console (HTML); it signs the admin in with Entra ID.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The console page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/console/{file}": {
            "get": {
                "operationId": "consoleFile",
                "summary": "The console's static files (scripts, styles, MSAL.js, settings).",
                "security": [],
                "parameters": [
                    {
                        "name": "file",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z0-9-]+\\.(js|css|json)$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file, with its content type.",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                            JSON: {"schema": _ref("ConsoleConfig")},
                        },
                    },
                    "404": _problem("NotFound"),
                },
            }
        },
    }


def _profile_fields() -> dict[str, Any]:
    return {
        "groupId": _GUID,
        "priority": {"type": "integer", "minimum": 0, "description": "Lower wins; ties by name."},
        "ccmHostname": {"type": "string", "description": "CCMHOSTNAME, as CCM_HOSTNAME."},
        "siteCode": {"type": "string", "description": "SMSSiteCode, as SMS_SITE_CODE."},
        "managementPoint": {"type": "string", "description": "SMSMP, as SMS_MP."},
        "source": {"type": "string", "description": "/Source:, as CCMSETUP_SOURCE."},
        "noCrlCheck": {"type": "boolean"},
        "properties": {
            "type": "object",
            "description": "Further documented ccmsetup.exe properties (allow-list).",
            "propertyNames": {"enum": sorted(PROPERTY_CHECKS)},
            "additionalProperties": {"type": "string"},
        },
    }


def _schemas() -> dict[str, Any]:
    report_fields: dict[str, Any] = {
        "reportId": _GUID,
        "deviceId": _GUID,
        "tenantId": _GUID,
        "hostname": {"type": "string", "maxLength": 253},
        "stage": {"enum": list(STAGES)},
        "azureAdJoined": {"type": "boolean"},
        "domainJoined": {"type": "boolean"},
        "ccmsetupExitCode": {"type": ["integer", "null"]},
        "clientVersion": {"type": ["string", "null"]},
        "siteCode": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9]{3}$"},
    }
    state_fields = {
        **report_fields,
        "reportedAt": _nullable(UTC_TIME),
        "userObjectId": {"type": ["string", "null"]},
        "installErrorCode": {"type": ["integer", "null"]},
        "lastReportAt": _nullable(UTC_TIME),
        "reportCount": {"type": "integer", "minimum": 0},
        "diagnosis": _ref("Diagnosis"),
    }
    state_required = ["deviceId", "stage", "reportedAt", "lastReportAt", "diagnosis"]
    auth = {
        "auth": {"enum": ["device", "user", "device+user", None]},
        "certThumbprint": {"type": ["string", "null"]},
        "userObjectId": {"type": ["string", "null"]},
    }
    counts = {
        "type": "object",
        "required": list(STAGES),
        "properties": {stage: {"type": "integer", "minimum": 0} for stage in STAGES},
    }
    return {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "Each failing field or parameter and what is wrong with it.",
                    "items": {
                        "type": "object",
                        "required": ["field", "detail"],
                        "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
                    },
                },
            },
        },
        "CompactJws": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
        },
        "Jwks": {
            "type": "object",
            "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["kty", "kid", "n", "e"],
                        "properties": {
                            "kty": {"const": "RSA"},
                            "kid": {"type": "string"},
                            "n": {"type": "string"},
                            "e": {"type": "string"},
                            "use": {"const": "sig"},
                            "alg": {"const": "RS256"},
                        },
                    },
                }
            },
        },
        "StatusReport": {
            "type": "object",
            "description": f"At most {MAX_BODY_BYTES} bytes; unknown fields are refused.",
            "additionalProperties": False,
            "required": [*report_fields, "reportedAt"],
            "properties": {
                **report_fields,
                "reportedAt": {"type": "string", "format": "date-time"},
                "dsregcmd": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "maxLength": 2048},
                    "maxProperties": 256,
                },
                "userObjectId": {
                    **_GUID,
                    "description": "The user whose token the client used (optional).",
                },
                "installErrorCode": {
                    "type": "integer",
                    "description": "The last error the client logged, e.g. 0x87D00231 "
                    "(optional; signed or unsigned 32-bit).",
                },
            },
        },
        "Diagnosis": {
            "type": "object",
            # What each code means: the console's legend and filter list.
            "x-catalogue": {code: d.to_json() for code, d in DIAGNOSES.items()},
            "required": ["code", "severity", "summary", "advice"],
            "properties": {
                "code": {"enum": list(DIAGNOSES)},
                "severity": {"enum": ["ok", "info", "warning", "error"]},
                "summary": {"type": "string"},
                "advice": {"type": "string"},
            },
        },
        "DeviceState": {
            "type": "object",
            "required": state_required,
            "properties": state_fields,
        },
        "DevicePage": {
            "type": "object",
            "required": ["devices", "next"],
            "properties": {
                "devices": {"type": "array", "items": _ref("DeviceState")},
                "next": {"type": ["string", "null"]},
                "continuation": {"type": ["string", "null"], "description": "Same as next."},
            },
        },
        "DeviceDetail": {
            "type": "object",
            "required": [*state_required, "dsregcmd", "history", "timeline"],
            "properties": {
                **state_fields,
                "dsregcmd": {"type": "object", "additionalProperties": {"type": "string"}},
                "history": {
                    "type": "array",
                    "items": {"type": "object", "properties": {**report_fields, **auth}},
                },
                "timeline": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind", "at"],
                        "properties": {
                            "kind": {"enum": ["report", "bundle"]},
                            "at": UTC_TIME,
                            "jti": {"type": "string"},
                            "issued": UTC_TIME,
                            "expires": _nullable(UTC_TIME),
                            "profile": {"type": ["string", "null"]},
                            **auth,
                        },
                    },
                },
            },
        },
        "StageCounts": {
            "type": "object",
            "description": "The stage counts of the Overview snapshot.",
            "required": ["counts", "total", "asOf", "refreshing"],
            "properties": {
                "counts": counts,
                "total": {"type": "integer"},
                "asOf": _nullable(UTC_TIME),
                "refreshing": {"type": "boolean"},
            },
        },
        "Overview": {
            "type": "object",
            "description": "A snapshot a background summarization pass publishes: one point read "
            "answers it. asOf is when the pass that counted it started (null before the first "
            f"pass); a snapshot older than {FRESH_SECONDS} s asks for a new pass, and refreshing "
            "says one is running or queued: ask again for the new numbers.",
            "required": [
                "counts",
                "diagnoses",
                "installsByDay",
                "total",
                "asOf",
                "refreshing",
            ],
            "properties": {
                "asOf": _nullable(UTC_TIME),
                "refreshing": {"type": "boolean"},
                "counts": counts,
                "diagnoses": {
                    "type": "object",
                    "required": list(DIAGNOSES),
                    "properties": {code: {"type": "integer"} for code in DIAGNOSES},
                },
                "installsByDay": {
                    "type": "array",
                    "minItems": INSTALL_CHART_DAYS,
                    "maxItems": INSTALL_CHART_DAYS,
                    "items": {
                        "type": "object",
                        "required": ["day", "count"],
                        "properties": {
                            "day": {"type": "string", "format": "date"},
                            "count": {"type": "integer", "minimum": 0},
                        },
                    },
                },
                "total": {"type": "integer"},
            },
        },
        "RunProgress": {
            "type": "object",
            "required": ["pages", "users", "expectedUsers", "percent", "secondsLeft"],
            "properties": {
                "pages": {"type": "integer"},
                "users": {"type": "integer"},
                "expectedUsers": {"type": ["integer", "null"]},
                "percent": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
                "secondsLeft": {"type": ["integer", "null"]},
                "usersPerSecond": {"type": ["number", "null"]},
            },
        },
        "Run": {
            "type": "object",
            "required": ["runId", "mode", "trigger", "status", "startedAt"],
            "properties": {
                "runId": {"type": "string"},
                "resource": {"enum": ["users", "groups"]},
                "mode": {"enum": ["full", "delta"]},
                "trigger": {"type": "string"},
                # `skipped`: rows written before bursts were coalesced into pending runs.
                "status": {"enum": ["running", "succeeded", "failed", "skipped", "continued"]},
                "requests": {
                    "type": ["integer", "null"],
                    "description": "How many triggers and events this run absorbed.",
                },
                "pages": {"type": ["integer", "null"]},
                "upserts": {"type": ["integer", "null"]},
                "deletes": {"type": ["integer", "null"]},
                "startedAt": _nullable(UTC_TIME),
                "finishedAt": _nullable(UTC_TIME),
                "durationSeconds": {"type": ["number", "null"]},
                "invocations": {"type": ["integer", "null"]},
                "error": {"type": ["string", "null"]},
                "fallbackReason": {"type": ["string", "null"]},
                "progress": _nullable(_ref("RunProgress")),
            },
        },
        "RunsPage": {
            "type": "object",
            "required": ["runs", "next"],
            "properties": {
                "runs": {"type": "array", "items": _ref("Run")},
                "next": {"type": ["string", "null"]},
                "continuation": {"type": ["string", "null"], "description": "Same as next."},
            },
        },
        "Group": {
            "type": "object",
            "required": ["groupId"],
            "properties": {
                "groupId": {"type": "string"},
                "displayName": {"type": ["string", "null"]},
                "securityEnabled": {"type": ["boolean", "null"]},
                "isDeleted": {"type": ["boolean", "null"]},
                "lastDiscoveredAt": _nullable(UTC_TIME),
            },
        },
        "GroupsPage": {
            "type": "object",
            "required": ["groups", "next"],
            "properties": {
                "groups": {"type": "array", "items": _ref("Group")},
                "next": {"type": ["string", "null"]},
            },
        },
        "ProfileBody": {
            "type": "object",
            "required": ["groupId", "priority"],
            "additionalProperties": False,
            "properties": _profile_fields(),
        },
        "Profile": {
            "type": "object",
            "required": ["name", "groupId", "priority"],
            "properties": {
                "name": {"type": "string"},
                **_profile_fields(),
                "updatedBy": {"type": ["string", "null"]},
                "updatedAt": _nullable(UTC_TIME),
                "upToDate": {
                    "type": "boolean",
                    "description": "In a PUT answer: whether the resolved profiles already "
                    "follow this change (false until the queued rebuild has run).",
                },
            },
        },
        "ProfilesPage": {
            "type": "object",
            "required": ["profiles", "next"],
            "properties": {
                "profiles": {"type": "array", "items": _ref("Profile")},
                "next": {"type": ["string", "null"]},
            },
        },
        "ProfileResolution": {
            "type": "object",
            "required": ["profile", "candidates", "upToDate"],
            "properties": {
                "deviceId": {"type": ["string", "null"]},
                "deviceObjectId": {"type": ["string", "null"]},
                "userId": {"type": ["string", "null"]},
                "profile": {"type": "string", "description": "'default' when none matched."},
                "matchedBy": {"enum": ["device", "user", None]},
                "overrides": {"type": "object"},
                "upToDate": {
                    "type": "boolean",
                    "description": "False while a rebuild after a change is still to run.",
                },
                "candidates": {
                    "type": "array",
                    "description": "Each member's profile, the applied one first.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "memberId": {"type": "string"},
                            "memberType": {"enum": ["device", "user"]},
                            "profile": {"type": "string"},
                            "priority": {"type": "integer"},
                            "groupId": {"type": "string"},
                            "groupPath": {
                                "type": "array",
                                "description": "The profile's group first, the member's own "
                                "group last.",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "groupId": {"type": "string"},
                                        "displayName": {"type": ["string", "null"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["healthy", "unhealthy"]},
                "lastDiscoveryRun": _nullable(
                    {
                        "type": "object",
                        "properties": {
                            "startedAt": _nullable(UTC_TIME),
                            "finishedAt": _nullable(UTC_TIME),
                        },
                    }
                ),
            },
        },
        "ConsoleConfig": {
            "type": "object",
            "required": ["signIn", "clientId", "authority", "scopes"],
            "properties": {
                "signIn": {"enum": ["msal", "demo"]},
                "clientId": {"type": "string"},
                "authority": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "demoTokenUrl": {"type": ["string", "null"]},
            },
        },
    }


def _responses() -> dict[str, Any]:
    problems = {
        "BadRequest": "Bad input; `errors` names each failing field or parameter.",
        "Unauthorized": "No token or proof, or one that is not valid (WWW-Authenticate says "
        "which: Bearer or Device-Proof).",
        "Forbidden": "A valid token that is not allowed here (another app, no admin role, an "
        "app-only token, a blocked or disabled device).",
        "NotFound": "Nothing recorded under this id.",
        "PayloadTooLarge": f"A body over {MAX_BODY_BYTES} bytes.",
        "UnsupportedMediaType": "A body with a Content-Encoding; send it uncompressed.",
        "Unavailable": "Storage, Graph or the key endpoint is down; retry after Retry-After.",
    }
    return {
        name: {"description": text, "content": {PROBLEM_JSON: {"schema": _ref("Problem")}}}
        for name, text in problems.items()
    }


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ConfigMgr Cloud Bootstrap",
            "version": "1.0.0",
            "description": (
                "Signed ccmsetup bundles for internet Windows devices that authenticate with "
                "Entra ID, their status reports, and the admin views. Every time is RFC 3339 "
                "UTC with Z; lists page with an opaque `next` token."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "entraBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An Entra ID access token for the server app. Admin views "
                    "need a delegated (user) token whose roles hold ADMIN_ROLE.",
                },
                "deviceProof": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Device-Proof",
                    "description": "A proof signed with the device's Entra ID certificate key.",
                },
            },
        },
    }
