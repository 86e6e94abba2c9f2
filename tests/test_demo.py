"""The README's demo command runs and writes its PNG."""
import subprocess
import sys

from ott_enot import __main__ as demo


def test_demo_prints_costs_and_writes_png(tmp_path, capsys):
  out = tmp_path / "map.png"
  assert demo.main(["--iters", "30", "--batch", "64", "--valid", "128",
                    "--eval", "128", "--no-progress", "--out", str(out)]) == 0
  text = capsys.readouterr().out
  for row in ("ENOT dual estimate", "Sinkhorn (eps", "forward T(x) -> y",
              "inverse T^-1(y) -> x", "strays", "spread", "mass"):
    assert row in text
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point_help():
  res = subprocess.run([sys.executable, "-m", "ott_enot", "--help"],
                       capture_output=True, text=True, check=True)
  assert "--iters" in res.stdout
