import sys
from pathlib import Path

# tests/ is on sys.path so `import nbgrader_harness` and `import mutants` work.
sys.path.insert(0, str(Path(__file__).resolve().parent))
