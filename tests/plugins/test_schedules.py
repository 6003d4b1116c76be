"""The shipped schedule examples work as written: each `rrim` command line runs (dry run) with the real
CLI; the cron file is valid; the systemd units pass `systemd-analyze verify` and their hardening
leaves the outputs writable; the Kubernetes manifests validate against the API schemas and name the
current version; the host-install recipe and the wheel provide what the units point to."""
from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

import rrim
from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE

REPO = Path(__file__).resolve().parents[2]
SCHEDULES = REPO / "plugins" / "schedules"
SERVICE_USER = "rrim-svc"
DOC_LINK = "file:///opt/rrim/share/rrim/schedules/README.md"
#: Kubernetes 1.31 (podFailurePolicy generally available) and the newest schema known
K8S_VERSIONS = ("1.31", kubernetes_validate.latest_version())
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _run_dry(args: list[str], tmp_path: Path) -> None:
    """Run `rrim ARGS --dry-run` with the examples' folders mapped into tmp_path."""
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


def _recipe() -> str:
    """The host-install recipe: the first sh block of the schedules' README."""
    return re.search(r"```sh\n(.*?)```", (SCHEDULES / "README.md").read_text(), re.S).group(1)


def _cron_field_ok(field: str, lo: int, hi: int) -> bool:
    """One numeric cron field: lists of *, N or N-M, each with an optional /STEP."""
    for part in field.split(","):
        span, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if span == "*":
            continue
        a, _, b = span.partition("-")
        if not (a.isdigit() and (b == "" or b.isdigit()) and lo <= int(a) <= int(b or a) <= hi):
            return False
    return True


@pytest.mark.parametrize("field, ok", [("30", True), ("*/15", True), ("1,2-5", True), ("60", False),
                                       ("*/0", False), ("5-1", False), ("x", False), ("", False)])
def test_cron_field_check(field, ok):
    assert _cron_field_ok(field, 0, 59) is ok


def _cron_job() -> tuple[list[str], str, list[str]]:
    """(the five time fields, the user, the command's argv before its redirection) of the cron file."""
    text = (SCHEDULES / "rrim-reprocess.cron").read_text()
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    for name in re.findall(r"/etc/cron\.d/(\S+)", text):
        assert "." not in name, f"cron skips files in /etc/cron.d with a dot in the name: {name}"
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    variables = [line.split("=", 1)[0] for line in lines if re.match(r"^[A-Za-z_]+=", line)]
    assert not [v for v in variables if v.startswith("RRIM_")], "rrim reads its settings from options"
    (cache_home,) = [line.split("=", 1)[1] for line in lines if line.startswith("XDG_CACHE_HOME=")]
    assert f" {cache_home}/rrim" in _recipe(), "the host-install recipe creates the cache folder"
    (job,) = [line for line in lines if not re.match(r"^[A-Za-z_]+=", line)]
    *times, user, command = job.split(None, 6)
    assert "%" not in command.replace(r"\%", ""), "an unescaped % ends a cron command"
    argv, redirect = command.split(">>")
    log_folder = PurePosixPath(shlex.split(redirect)[0]).parent
    assert f" {log_folder}" in _recipe(), "the host-install recipe creates the log folder"
    return times, user, shlex.split(argv)


def test_cron_file(tmp_path):
    times, user, argv = _cron_job()
    assert all(_cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(times, CRON_RANGES, strict=True)), times
    assert user == SERVICE_USER and "useradd --system" in _recipe() and SERVICE_USER in _recipe()
    assert argv[0] == "/opt/rrim/bin/rrim"
    _run_dry(argv[1:], tmp_path)


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """section → key → values (in order; a key may repeat) of a systemd unit file."""
    sections: dict[str, dict[str, list[str]]] = {}
    for line in (SCHEDULES / name).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _exec_argv() -> list[str]:
    (command,) = _unit("rrim-reprocess.service")["Service"]["ExecStart"]
    assert "$" not in command, "no variables: the command line is the configuration"
    return shlex.split(command)


def test_systemd_service_runs_the_cli(tmp_path):
    service = _unit("rrim-reprocess.service")["Service"]
    assert service["Type"] == ["oneshot"] and service["SuccessExitStatus"] == ["5"]
    assert not [e for e in service.get("Environment", []) if e.startswith("RRIM_")]
    argv = _exec_argv()
    assert argv[0] == _cron_job()[2][0]
    _run_dry(argv[1:], tmp_path)


def _under(path, folders) -> bool:
    return any(PurePosixPath(path).is_relative_to(folder) for folder in folders)


def test_systemd_hardening_keeps_the_outputs_writable():
    service = _unit("rrim-reprocess.service")["Service"]
    argv = _exec_argv()
    archive, output = argv[argv.index("reprocess") + 1], argv[argv.index("-o") + 1]
    report = PurePosixPath(argv[argv.index("--report") + 1])
    writable = " ".join(service["ReadWritePaths"]).split()
    assert service["ProtectSystem"] == ["strict"] and service["ProtectHome"] == ["yes"]
    assert _under(output, writable) and _under(report.parent, writable)
    assert _under(archive, " ".join(service["ReadOnlyPaths"]).split()) and not _under(archive, writable)
    assert not _under(archive, ["/home", "/root", "/run/user"]) and not _under(output, ["/home", "/root", "/run/user"])
    assert f" {writable[0]} " in _recipe(), "the host-install recipe creates the outputs folder"
    (cache_home,) = [e.split("=", 1)[1] for e in service["Environment"] if e.startswith("XDG_CACHE_HOME=")]
    assert PurePosixPath(cache_home, "rrim") == PurePosixPath("/var/cache", *service["CacheDirectory"])
    assert service["User"] == service["Group"] == [SERVICE_USER]
    assert service["NoNewPrivileges"] == service["PrivateTmp"] == ["yes"]


def _units_in(tmp_path: Path) -> list[Path]:
    """Copies of the service and timer with ExecStart's rrim replaced by this environment's."""
    rrim_bin = Path(sys.executable).with_name("rrim")
    assert rrim_bin.is_file()
    paths = []
    for name in ("rrim-reprocess.service", "rrim-reprocess.timer"):
        text = (SCHEDULES / name).read_text().replace("/opt/rrim/bin/rrim", str(rrim_bin))
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path):
    probe = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, _units_in(tmp_path))],
                           capture_output=True, text=True, check=False, timeout=60)
    assert probe.returncode == 0 and not probe.stdout + probe.stderr, probe.stdout + probe.stderr
    (calendar,) = _unit("rrim-reprocess.timer")["Timer"]["OnCalendar"]
    probe = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_hardening_score(tmp_path):
    service = _units_in(tmp_path)[0]
    probe = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(service)],
                           capture_output=True, text=True, check=False, timeout=60)
    if "offline" in probe.stderr and "unrecognized" in probe.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    assert probe.returncode == 0, probe.stdout[-2000:]


def test_documentation_link_resolves_after_the_host_install():
    for name in ("rrim-reprocess.service", "rrim-reprocess.timer"):
        assert _unit(name)["Unit"]["Documentation"] == [DOC_LINK]
    link = PurePosixPath(DOC_LINK.removeprefix("file://")).parent
    (line,) = [line for line in _recipe().splitlines() if line.startswith("ln -sfn") and line.endswith(f" {link}")]
    code = re.search(r"-c '([^']+)'", line).group(1)
    folder = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert (Path(folder) / "README.md").read_text() == (SCHEDULES / "README.md").read_text()


def test_wheel_ships_the_schedule_files(tmp_path):
    pytest.importorskip("setuptools", minversion="69")  # pyproject.toml's build backend, built offline
    src = tmp_path / "src"
    src.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, src)
    for part in ("runtime", "export", "plugins"):
        shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("rrim-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"rrim/plugins/schedules/{p.name}" for p in SCHEDULES.iterdir()}
    assert wanted <= shipped, sorted(wanted - shipped)


def _manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((SCHEDULES / name).read_text()) if d is not None]


def _pod(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", ["cronjob.yaml", "cronjob-gpu.yaml", "storage.yaml"])
def test_manifests_validate_against_the_kubernetes_schema(name, version):
    docs = _manifests(name)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_check_refuses_a_misspelt_field():
    (doc,) = _manifests("cronjob.yaml")
    bad = copy.deepcopy(doc)
    bad_container = _pod(bad)["containers"][0]
    bad_container["resources"]["limit"] = bad_container["resources"].pop("limits")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", ["cronjob.yaml", "cronjob-gpu.yaml"])
def test_cronjob_runs_unattended_and_unprivileged(name, tmp_path):
    (doc,) = _manifests(name)
    spec, job, pod = doc["spec"], doc["spec"]["jobTemplate"]["spec"], _pod(doc)
    assert spec["concurrencyPolicy"] == "Forbid" and pod["restartPolicy"] == "Never"
    assert spec["schedule"].split()[2:] == ["*", "*", "*"] and job["activeDeadlineSeconds"] < 24 * 3600
    (container,) = pod["containers"]
    (fail,) = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert fail["onExitCodes"]["containerName"] == container["name"] and set(fail["onExitCodes"]["values"]) == {1, 2, 3, 4, 5, 6}  # 6: most spectra skipped (a retry would find the outputs current)
    resources = container["resources"]
    assert all(resources["requests"][k] == resources["limits"][k] for k in ("cpu", "memory"))
    uid, gid = re.search(r"^USER (\d+):(\d+)$", (REPO / "containers" / "Containerfile").read_text(), re.M).groups()
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    assert security["fsGroup"] == int(gid) and security["fsGroupChangePolicy"] == "OnRootMismatch"
    own = container["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    assert "env" not in container, "rrim's settings are command-line options"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    archive = volumes[mounts["/data/in"]["name"]]["persistentVolumeClaim"]
    assert mounts["/data/in"]["readOnly"] is True and archive["readOnly"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v}
    assert claims == {d["metadata"]["name"] for d in _manifests("storage.yaml")}
    provider = container["args"].index("--provider") + 1
    _run_dry([*container["args"][:provider], "cpu", *container["args"][provider + 1:]], tmp_path)  # no GPU here


def test_gpu_variant_is_the_cpu_job_with_a_gpu():
    (cpu,), (gpu,) = _manifests("cronjob.yaml"), _manifests("cronjob-gpu.yaml")
    pod = _pod(gpu)
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-cuda") and container["args"][container["args"].index("--provider") + 1] == "cuda"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    for doc in (cpu, gpu):  # apart from these, the two are the same job
        _pod(doc).pop("tolerations", None)
        (c,) = _pod(doc)["containers"]
        del c["image"], c["resources"]
        c["args"] = [a for a in c["args"] if a not in ("cpu", "cuda")]
    assert gpu == cpu


def test_image_tags_name_the_package_version():
    version = importlib.metadata.version("rrim")
    assert rrim.__version__ == version, "pyproject.toml and rrim.__version__ disagree"
    for name, flavour in (("cronjob.yaml", "cpu"), ("cronjob-gpu.yaml", "cuda")):
        tags = set(re.findall(r"/rrim:(\S+?-(?:cpu|cuda))\b", (SCHEDULES / name).read_text()))
        assert tags == {f"{version}-{flavour}"}, f"{name}: tags {sorted(tags)}; set them to {version}-{flavour}"
        (container,) = _pod(_manifests(name)[0])["containers"]
        assert container["image"].endswith(f"/rrim:{version}-{flavour}")


def test_documented_build_tags_the_package_version():
    text = (REPO / "containers" / "README.md").read_text()
    (line,) = re.findall(r"^VERSION=\$\(.*\)$", text, re.M)
    printed = subprocess.run(["bash", "-c", f"{line} && echo $VERSION"], cwd=REPO, capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == importlib.metadata.version("rrim")
    for flavour in ("cpu", "cuda"):
        assert f"--build-arg FLAVOUR={flavour} -t localhost/rrim:$VERSION-{flavour}" in text
