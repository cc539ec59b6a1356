"""Route templates for metric labels: `/api/user/{user_id}/routine`, never the raw path."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from instrumentation.vocabulary import UNMATCHED_ROUTE

# The resolver's cache holds at most this many paths of at most this many characters, their
# strings together at most this many bytes: ~1 MiB of keys plus ~200 KiB of table, whatever
# paths a client sends. Route paths are short; a longer one is resolved on every request.
_MAX_CACHED_PATHS = 4096
_MAX_CACHED_PATH_CHARS = 256
_MAX_CACHED_BYTES = 1 << 20


def route_template(scope: Mapping[str, Any]) -> str:
    """The template of the route the router matched, from `scope["route"]` after the app ran.

    Inside a mounted app that is the inner route's template only; `is_mounted` tells.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


class RouteResolver:
    """Finds the template for a path before the app runs (for the in-progress gauge).

    The route list is read on first use, when the app has registered its routes; results are
    cached for the most recent short paths, so a repeated path costs one dict lookup. The cache
    is bounded in bytes, not only in entries: the paths are the client's, and a flood of long
    distinct ones (4 bytes per character once one is outside the BMP) must not pin memory.

    >>> RouteResolver(lambda: app.routes).template("/api/user/u-1/routine")
    '/api/user/{user_id}/routine'
    """

    def __init__(self, routes: Callable[[], Iterable[Any]]) -> None:
        self._routes = routes
        self._patterns: list[_Pattern] | None = None
        self._cache: dict[str, str] = {}
        self._cached_bytes = 0

    def template(self, path: str) -> str:
        cacheable = len(path) <= _MAX_CACHED_PATH_CHARS
        if cacheable:
            template = self._cache.get(path)
            if template is not None:
                return template
        if self._patterns is None:
            self._patterns = _patterns(self._routes())
        template = _match(self._patterns, path) or UNMATCHED_ROUTE
        if cacheable:
            self._remember(path, template)
        return template

    @property
    def cached_paths(self) -> int:
        """How many paths the cache holds now."""
        return len(self._cache)

    def _remember(self, path: str, template: str) -> None:
        size = sys.getsizeof(path)
        if len(self._cache) >= _MAX_CACHED_PATHS or self._cached_bytes + size > _MAX_CACHED_BYTES:
            self._cache.clear()
            self._cached_bytes = 0
        self._cache[path] = template
        self._cached_bytes += size


# (regex, template, the routes of a mounted app or None)
_Pattern = tuple[re.Pattern[str], str, "list[Any] | None"]


def _patterns(routes: Iterable[Any]) -> list[_Pattern]:
    patterns: list[_Pattern] = []
    for route in routes:
        regex, path = getattr(route, "path_regex", None), getattr(route, "path", None)
        if isinstance(regex, re.Pattern) and isinstance(path, str):
            sub_routes = getattr(route, "routes", None)  # a Mount of an app with a router
            if sub_routes:
                patterns.append((regex, path, _patterns(sub_routes)))
            else:
                patterns.append((regex, getattr(route, "path_format", None) or path, None))
    return patterns


def _match(patterns: list[_Pattern], path: str) -> str | None:
    """The full template for `path`, mount prefixes included (`/sub/items/{user_id}`)."""
    for regex, template, mounted in patterns:
        match = regex.match(path)
        if match is None:
            continue
        if mounted is None:
            return template
        inner = _match(mounted, "/" + match.groupdict().get("path", ""))
        return template.rstrip("/") + inner if inner else template
    return None


def is_mounted(scope: Mapping[str, Any]) -> bool:
    """True when a Mount routed the request: its prefix is in root_path, not in the template."""
    root_path = scope.get("root_path", "")
    return bool(root_path != scope.get("app_root_path", root_path))
