"""The shipped schedule examples: each `rrim` command line runs (dry run) with the real CLI, and the
unit files and the Kubernetes manifest are well formed."""
from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE

SCHEDULES = Path(__file__).resolve().parents[1] / "plugins" / "schedules"


def _run_dry(args: list[str], tmp_path: Path) -> None:
    """Run `rrim ARGS --dry-run` with the example's folders mapped into tmp_path."""
    (tmp_path / "in").mkdir()
    shutil.copy(EXAMPLE_ARCHIVE, tmp_path / "in" / "run001.nc")
    (tmp_path / "out").mkdir()
    mapping = {"/beamline/archives": tmp_path / "in", "/data/in": tmp_path / "in",
               "/beamline/glue": tmp_path / "out", "/data/out": tmp_path / "out"}
    mapped = []
    for a in args:
        for old, new in mapping.items():
            a = a.replace(old, str(new))
        mapped.append(a)
    Path(mapped[mapped.index("-o") + 1]).mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(main, [*mapped, "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = Path(mapped[mapped.index("--report") + 1]).read_text() if "--report" in mapped else result.output
    assert json.loads(report)["would_process"] == ["run001.nc"]


def test_cron_line(tmp_path):
    lines = [l for l in (SCHEDULES / "rrim-reprocess.cron").read_text().splitlines() if l and not l.startswith("#")]
    env = dict(l.split("=", 1) for l in lines if re.match(r"^[A-Z_]+=", l))
    assert set(env) == {"RRIM_ARCHIVE_DIR", "RRIM_OUTPUT_DIR", "RRIM_MODEL"}
    job = [l for l in lines if not re.match(r"^[A-Z_]+=", l)]
    assert len(job) == 1
    fields = job[0].split(None, 6)
    minute, hour, dom, month, dow, user, command = fields
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24 and (dom, month, dow) == ("*", "*", "*") and user
    argv = shlex.split(command.split(">>")[0])
    assert argv[0].endswith("/rrim")
    _run_dry(argv[1:], tmp_path)


def test_systemd_service_and_timer(tmp_path):
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str
    service.read(SCHEDULES / "rrim-reprocess.service")
    assert service["Service"]["Type"] == "oneshot"
    env = dict(e.split("=", 1) for e in re.findall(r"Environment=(\S+)", (SCHEDULES / "rrim-reprocess.service").read_text()))
    cmd = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], service["Service"]["ExecStart"])
    argv = shlex.split(cmd)
    assert argv[0].endswith("/rrim")
    _run_dry(argv[1:], tmp_path)
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(SCHEDULES / "rrim-reprocess.timer")
    assert timer["Install"]["WantedBy"] == "timers.target"
    calendar = timer["Timer"]["OnCalendar"]
    if shutil.which("systemd-analyze"):
        probe = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True, check=False)
        assert probe.returncode == 0, probe.stderr


def test_kubernetes_cronjob(tmp_path):
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((SCHEDULES / "cronjob.yaml").read_text())
    assert doc["kind"] == "CronJob" and doc["apiVersion"] == "batch/v1"
    assert doc["spec"]["concurrencyPolicy"] == "Forbid"
    pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/in"]["readOnly"] is True and "/data/out" in mounts and "/tmp" in mounts
    assert pod["securityContext"]["runAsNonRoot"] is True
    _run_dry(container["args"], tmp_path)
