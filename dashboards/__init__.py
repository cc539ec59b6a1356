"""corrstack's Grafana dashboards as code: one factory per dashboard, built by `dashboards.build`.

>>> from dashboards import service_overview
>>> service_overview().build().uid
'service-overview'
"""

from dashboards.business import business
from dashboards.errors import errors
from dashboards.request_trace import request_trace
from dashboards.service_overview import service_overview
from dashboards.system_health import system_health

__all__ = ["business", "errors", "request_trace", "service_overview", "system_health"]
