"""Table and queue names fixed by docs/contract.md (operators and Event Grid subscriptions use
them)."""

from typing import Final

# Tables
AAD_USERS: Final = "AadUsers"
DISCOVERY_STATE: Final = "DiscoveryState"
DISCOVERY_RUNS: Final = "DiscoveryRuns"
DEVICE_STATUS: Final = "DeviceStatus"
DEVICE_STATUS_HISTORY: Final = "DeviceStatusHistory"
BUNDLE_ISSUANCE: Final = "BundleIssuance"
BLOCKED_DEVICES: Final = "BlockedDevices"
REJECTED_REPORTS: Final = "RejectedReports"
# Device proofs already used (single-use jti across instances; see shared/auth/_replay.py).
DEVICE_PROOFS: Final = "DeviceProofs"
AAD_GROUPS: Final = "AadGroups"
AAD_GROUP_MEMBERS: Final = "AadGroupMembers"
GRAPH_SUBSCRIPTIONS: Final = "GraphSubscriptions"
INSTALL_PROFILES: Final = "InstallProfiles"
# The profile each user and device gets, derived (see shared/profiles/_resolved.py).
RESOLVED_PROFILES: Final = "ResolvedProfiles"
# The fleet overview's snapshot and its summarization pass (see shared/reports/_overview.py).
DEVICE_OVERVIEW: Final = "DeviceOverview"

ALL_TABLES: Final = (
    AAD_USERS,
    DISCOVERY_STATE,
    DISCOVERY_RUNS,
    DEVICE_STATUS,
    DEVICE_STATUS_HISTORY,
    BUNDLE_ISSUANCE,
    BLOCKED_DEVICES,
    REJECTED_REPORTS,
    DEVICE_PROOFS,
    AAD_GROUPS,
    AAD_GROUP_MEMBERS,
    GRAPH_SUBSCRIPTIONS,
    INSTALL_PROFILES,
    RESOLVED_PROFILES,
    DEVICE_OVERVIEW,
)

# Queues
DISCOVERY_CONTINUE_QUEUE: Final = "discovery-continue"
DEVICE_STATUS_QUEUE: Final = "device-status"
ALL_QUEUES: Final = (DISCOVERY_CONTINUE_QUEUE, DEVICE_STATUS_QUEUE)
