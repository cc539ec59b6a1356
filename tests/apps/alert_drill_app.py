"""An instrumented app for the alert drill: `/flaky` answers 500 four times in five."""

from __future__ import annotations

import itertools

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from instrumentation import instrument_app

app = FastAPI()
instrument_app(app)

# A counter, not random: the drill's error ratio (80 %) needs no luck.
_calls = itertools.count()


@app.get("/flaky")
async def flaky() -> JSONResponse:
    if next(_calls) % 5:
        return JSONResponse({"error": "drill failure"}, status_code=500)
    return JSONResponse({"ok": True})
