"""The belt: orion's core, one module per seam. This list is its whole public surface.

Feature code imports from here (``from app.belt import region, command, ...``); anything
not re-exported below is private to the belt and may change.
"""

from . import passwords as passwords
from . import sessions as sessions
from . import shape as shape
from .audit import Journal as Journal
from .audit import JsonlSink as JsonlSink
from .auth import Auth as Auth
from .auth import User as User
from .auth import can as can
from .auth import current_user as current_user
from .auth import grants_watch as grants_watch
from .auth import load_local_identity as load_local_identity
from .auth import require as require
from .authz import Authz as Authz
from .authz import create_authz as create_authz
from .boot import install as install
from .boot import settings as settings
from .bus import EVERYTHING as EVERYTHING
from .bus import Bus as Bus
from .bus import Topic as Topic
from .bus import Watchable as Watchable
from .command import Invalid as Invalid
from .command import Refused as Refused
from .command import Respond as Respond
from .command import command as command
from .ctx import BoundBus as BoundBus
from .ctx import Ctx as Ctx
from .fragment import fragment as fragment
from .html import Markup as Markup
from .html import attrs as attrs
from .html import escape as escape
from .html import html as html
from .html import join as join
from .live import Region as Region
from .live import live_attrs as live_attrs
from .live import region as region
from .live import stream as stream
from .page import document as document
from .runtime import Runtime as Runtime
from .runtime import request_ctx as request_ctx
from .runtime import runtime as runtime
from .signals import BadInput as BadInput
from .store import MigrationError as MigrationError
from .store import Row as Row
from .store import Store as Store
from .tenancy import Gate as Gate
from .tenancy import Tenants as Tenants
from .tenancy import UnknownTenant as UnknownTenant
from .tenancy import check_key as check_key
from .tenancy import install_gate as install_gate
