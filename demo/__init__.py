"""The corrstack demo: a fitness-coaching API, its analysis service and a load generator.

`uvicorn demo.api:app --port 8000`, `uvicorn demo.analysis:app --port 8001`,
`python -m demo.loadgen --target http://127.0.0.1:8000`, or all of them with `python -m demo`.
"""

__all__: list[str] = []
