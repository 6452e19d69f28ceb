"""egt's config: the typed schemas (:mod:`egt.config.schema`, registered with Hydra's ConfigStore on import)
and the early validation (:mod:`egt.config.validation`). ``import egt.config`` registers the schema;
``egt.config.validate`` checks a composed config before any stage.
"""

from egt.config.schema import *  # noqa: F401,F403  (every schema dataclass; registers them)
from egt.config.schema import ConfigError, EgtConfig, register_configs, to_container  # noqa: F401
from egt.config.validation import (  # noqa: F401
    _ranks_every_sample,
    _schema_class,
    unknown_keys,
    validate,
)
