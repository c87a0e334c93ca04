from seed_growth.resources.growth_settings import GrowthSettingsResource
from seed_growth.resources.plumber import PlumberAuthError, PlumberError, PlumberResource, PlumberUnavailable
from seed_growth.resources.postgres import DatabaseUnavailable, PostgresResource, redact_url
from seed_growth.resources.redaction import redact

__all__ = [
    "DatabaseUnavailable",
    "GrowthSettingsResource",
    "PlumberAuthError",
    "PlumberError",
    "PlumberResource",
    "PlumberUnavailable",
    "PostgresResource",
    "redact",
    "redact_url",
]
