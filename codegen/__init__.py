"""Writing generated files, shared by every build in the repo (`dashboards`, `alert_rules`)."""

from codegen.generated_files import Generator, stale_files, write_files

__all__ = ["Generator", "stale_files", "write_files"]
