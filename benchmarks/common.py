"""What the benchmark scripts share: the commit they ran on."""
import subprocess


def commit() -> str:
  """The short hash of the checked-out commit (``unknown`` outside git)."""
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  except Exception:  # pylint: disable=broad-except
    return "unknown"
