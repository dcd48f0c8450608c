"""All ORM models, in one place (Alembic reads ``Base.metadata`` from here)."""

from app.models.alarm import AlarmAccount, AlarmEvent
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
from app.models.notification import GuardianView, Notification
from app.models.safe_return import SafeReturnAccess, SafeReturnPoint, SafeReturnSession

__all__ = [
    "POLICE_KINDS",
    "AlarmAccount",
    "AlarmEvent",
    "ArmState",
    "Assignment",
    "Base",
    "DeliveryAttempt",
    "Device",
    "DeviceKind",
    "DispatchReceipt",
    "District",
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
    "SafePlace",
    "SafeReturnAccess",
    "SafeReturnPoint",
    "SafeReturnSession",
    "SecurityEvent",
    "Staff",
    "StaffRecoveryCode",
    "StaffRole",
    "StaffToken",
    "staff_district",
]
