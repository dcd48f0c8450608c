"""All ORM models, in one place (Alembic reads ``Base.metadata`` from here)."""

from app.models.alarm import AlarmAccount, AlarmEvent
from app.models.asset import AssetKind, PublicAsset
from app.models.base import Base
from app.models.geo import POLICE_KINDS, District, PlaceKind, SafePlace
from app.models.home import ArmState, Home, HomeArmingEvent
from app.models.identity import (
    Device,
    DeviceKind,
    Guardian,
    Member,
    MemberSignInCode,
    MemberToken,
    SecurityEvent,
    Staff,
    StaffRecoveryCode,
    StaffRole,
    StaffToken,
    staff_district,
)
from app.models.incident import (
    Assignment,
    DeliveryAttempt,
    DispatchReceipt,
    Incident,
    IncidentEvent,
    IncidentSource,
    LocationAccess,
    LocationPoint,
    Offer,
    Outbox,
)
from app.models.interop import AgencySubscription
from app.models.notification import GuardianView, Notification
from app.models.safe_return import SafeReturnAccess, SafeReturnPoint, SafeReturnSession
from app.models.scouts import (
    SavedPlace,
    ScoutBooking,
    ScoutClosedDay,
    ScoutDistrict,
    ScoutHours,
    ScoutTeam,
)
from app.models.zone import AnalyticsRefresh, CrimeStat, Dong, SpecialZone

__all__ = [
    "POLICE_KINDS",
    "AgencySubscription",
    "AlarmAccount",
    "AlarmEvent",
    "AnalyticsRefresh",
    "ArmState",
    "AssetKind",
    "Assignment",
    "Base",
    "CrimeStat",
    "DeliveryAttempt",
    "Device",
    "DeviceKind",
    "DispatchReceipt",
    "District",
    "Dong",
    "Guardian",
    "GuardianView",
    "Home",
    "HomeArmingEvent",
    "Incident",
    "IncidentEvent",
    "IncidentSource",
    "LocationAccess",
    "LocationPoint",
    "Member",
    "MemberSignInCode",
    "MemberToken",
    "Notification",
    "Offer",
    "Outbox",
    "PlaceKind",
    "PublicAsset",
    "SafePlace",
    "SafeReturnAccess",
    "SafeReturnPoint",
    "SafeReturnSession",
    "SavedPlace",
    "ScoutBooking",
    "ScoutClosedDay",
    "ScoutDistrict",
    "ScoutHours",
    "ScoutTeam",
    "SecurityEvent",
    "SpecialZone",
    "Staff",
    "StaffRecoveryCode",
    "StaffRole",
    "StaffToken",
    "staff_district",
]
