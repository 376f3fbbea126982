"""The whole schema: every domain's models on the one ``Base``, for Alembic and the test fixtures."""
from __future__ import annotations

from registry.accounts import models as _accounts  # noqa: F401 - imported for their tables
from registry.complaints import models as _complaints  # noqa: F401
from registry.compliance import models as _compliance  # noqa: F401
from registry.infra.base import Base
from registry.institutions import models as _institutions  # noqa: F401
from registry.registration import models as _registration  # noqa: F401
from registry.notifications import models as _notifications  # noqa: F401
from registry.platforms import models as _platforms  # noqa: F401
from registry.tlog import models as _tlog  # noqa: F401
from registry.statistics import models as _statistics  # noqa: F401
from registry.verification import models as _verification  # noqa: F401

metadata = Base.metadata
