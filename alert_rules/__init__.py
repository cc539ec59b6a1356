"""Alert rules as code: Prometheus and Loki rules, SLO burn-rate alerts, promtool tests.

Build with `python -m alert_rules.build`; settings live in `alert_rules.config`.
"""

from alert_rules.config import DEFAULT, DRILL, PROFILES, AlertConfig, ConfigError

__all__ = ["DEFAULT", "DRILL", "PROFILES", "AlertConfig", "ConfigError"]
