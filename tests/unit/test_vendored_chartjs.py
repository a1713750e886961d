"""The vendored Chart.js is the pinned release, byte for byte, and the one the pages load."""

import hashlib
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "plugnmeet_webhooks" / "web" / "dashboard"
MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def test_the_vendored_files_match_their_checksums():
    version = re.search(r"^CHARTJS := (\S+)$", MAKEFILE.read_text(), re.M).group(1)
    folder = DASHBOARD / "static" / "vendor" / f"chart.js-{version}"
    sums = dict(
        reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines()
    )
    assert set(sums) == {"chart.umd.min.js", "LICENSE.md"}
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    base = (DASHBOARD / "templates" / "dashboard" / "base.html").read_text()
    assert f"vendor/chart.js-{version}/chart.umd.min.js" in base
    assert "MIT" in (folder / "LICENSE.md").read_text()
