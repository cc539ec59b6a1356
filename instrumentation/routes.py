"""Route templates for metric labels: `/api/user/{user_id}/routine`, never the raw path."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

UNMATCHED = "unmatched"
_MAX_CACHED_PATHS = 4096


def route_template(scope: Mapping[str, Any]) -> str:
    """The template of the route the router matched, from `scope["route"]` after the app ran."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class RouteResolver:
    """Finds the template for a path before the app runs (for the in-progress gauge).

    The route list is read on first use, when the app has registered its routes; results are
    cached for the most recent paths, so a repeated path costs one dict lookup.
    """

    def __init__(self, routes: Callable[[], Iterable[Any]]) -> None:
        self._routes = routes
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None
        self._cache: dict[str, str] = {}

    def template(self, path: str) -> str:
        template = self._cache.get(path)
        if template is not None:
            return template
        if self._patterns is None:
            self._patterns = [
                (route.path_regex, getattr(route, "path_format", None) or route.path)
                for route in self._routes()
                if isinstance(getattr(route, "path_regex", None), re.Pattern)
                and isinstance(getattr(route, "path", None), str)
            ]
        template = next((t for regex, t in self._patterns if regex.match(path)), UNMATCHED)
        if len(self._cache) >= _MAX_CACHED_PATHS:
            self._cache.clear()
        self._cache[path] = template
        return template
