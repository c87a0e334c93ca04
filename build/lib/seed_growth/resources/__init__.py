from seed_growth.resources.growth_settings import GrowthSettingsResource
from seed_growth.resources.plumber import PlumberError, PlumberResource, PlumberUnavailable
from seed_growth.resources.postgres import DatabaseUnavailable, PostgresResource, redact_url

__all__ = [
    "DatabaseUnavailable",
    "GrowthSettingsResource",
    "PlumberError",
    "PlumberResource",
    "PlumberUnavailable",
    "PostgresResource",
    "redact_url",
]
