"""The Dockerfile and .dockerignore follow the image rules (no Docker engine here: they are parsed).

Rules: multi-stage (builder with build tools, slim runtime); every base image pinned to a version;
a non-root numeric USER in both final targets (cpu, gpu); torch pinned to 2.13.0, CUDA wheels for
gpu and CPU wheels for cpu; the project installed with ``pip install -c constraints.txt .``; no
model weights in the image (the model cache is a mounted volume); the code server exposed on 3030
with a pass-through entrypoint; the cpu image can run the HTTP API (``videogen serve-api``: fastapi
and uvicorn direct dependencies, the ``api`` package installed); .dockerignore keeps local state and
caches out of the context.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENTRYPOINT_SCRIPT = REPO_ROOT / "k8s" / "image" / "entrypoint.sh"
TORCH_VERSION = "2.13.0"


# --- a small Dockerfile parser -----------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined, comments removed
    line: int  # where it starts (1-based)


@dataclass
class Stage:
    base: str  # the FROM argument, ARG references resolved
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        (stage,) = [s for s in self.stages if s.name == name]
        return stage

    def lineage(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        chain = [self.stage(name)]
        names = {s.name for s in self.stages}
        while chain[-1].base in names:
            chain.append(self.stage(chain[-1].base))
        return chain

    def effective_user(self, name: str) -> str | None:
        for stage in self.lineage(name):
            users = stage.all("USER")
            if users:
                return users[-1].args.strip()
        return None

    def effective_env(self, name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for stage in reversed(self.lineage(name)):
            for instruction in stage.all("ENV"):
                for key, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", instruction.args):
                    env[key] = value.strip('"')
        return env


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions as single lines: comments dropped, backslash continuations joined."""
    result: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment (also between continuation lines) or a parser directive
        if not stripped and not buffer:
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        result.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    assert not buffer, "the Dockerfile ends inside a continued instruction"
    return result


def substitute(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, text)


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in logical_lines(text):
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = substitute(args, global_args).split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"line {line}: only ARG may come before the first FROM"
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(Instruction(keyword, args, line))
    return Dockerfile(global_args, stages)


def stage_args(dockerfile: Dockerfile, stage: Stage) -> dict[str, str]:
    """Build args visible in a stage: global defaults re-declared there (``ARG NAME``) plus local ones."""
    visible: dict[str, str] = {}
    for instruction in stage.all("ARG"):
        key, sep, default = instruction.args.partition("=")
        key = key.strip()
        visible[key] = default.strip() if sep else dockerfile.global_args.get(key, "")
    return visible


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


# --- the parser itself ---------------------------------------------------------------------------


def test_parser_joins_continuations_drops_comments_and_resolves_from_args():
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1.7\n"
        "ARG BASE=python:3.11.7-slim-bookworm\n"
        "FROM ${BASE} AS build\n"
        "RUN apt-get update \\\n"
        "  # a comment inside the continuation\n"
        " && apt-get install -y ffmpeg\n"
        "\n"
        "FROM build AS final\n"
        "USER 10001:10001\n"
    )
    assert [s.name for s in parsed.stages] == ["build", "final"]
    assert parsed.stages[0].base == "python:3.11.7-slim-bookworm"
    assert parsed.stages[0].all("RUN")[0].args == "apt-get update && apt-get install -y ffmpeg"
    assert parsed.effective_user("final") == "10001:10001"
    assert [s.name for s in parsed.lineage("final")] == ["final", "build"]


# --- the rules -----------------------------------------------------------------------------------


def test_multi_stage_with_builders_and_two_final_targets(dockerfile):
    names = [s.name for s in dockerfile.stages]
    assert len(dockerfile.stages) >= 4
    assert {"builder", "runtime", "gpu", "cpu"} <= set(names)
    assert names[-1] == "cpu", "a plain `docker build .` must give the cpu image"
    # Build tools live in the builder only; the finals copy the installed environment from builders.
    assert "build-essential" in " ".join(i.args for i in dockerfile.stage("builder").all("RUN"))
    for target, builder in (("gpu", "builder-gpu"), ("cpu", "builder-cpu")):
        copies = [i.args for s in dockerfile.lineage(target) for i in s.all("COPY")]
        assert any(f"--from={builder}" in c for c in copies), target
        runs = " ".join(i.args for s in dockerfile.lineage(target) for i in s.all("RUN"))
        assert "build-essential" not in runs and "gcc" not in runs


def test_every_base_image_is_pinned_to_a_version(dockerfile):
    stage_names = {s.name for s in dockerfile.stages}
    external = [s.base for s in dockerfile.stages if s.base not in stage_names]
    assert external, "no external base image found"
    for image in external:
        assert "$" not in image, f"unresolved build arg in FROM {image}"
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{image}: no tag"
        assert tag != "latest", f"{image}: 'latest' is not a version"
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{image}: the tag must carry a full version"


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_final_targets_run_as_a_non_root_numeric_user(dockerfile, target):
    user = dockerfile.effective_user(target)
    assert user is not None, f"{target}: no USER"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{target}: USER {user} (numeric and non-zero, for runAsNonRoot)"
    # The USER comes after the last RUN of the target, so nothing after it runs as root.
    stage = dockerfile.stage(target)
    last_user = max(i.line for i in stage.all("USER"))
    assert all(i.line < last_user for i in stage.all("RUN"))


def test_torch_is_pinned_and_comes_from_the_right_wheel_index(dockerfile):
    assert dockerfile.global_args["TORCH_VERSION"] == TORCH_VERSION
    indexes = {"builder-gpu": "TORCH_CUDA_INDEX", "builder-cpu": "TORCH_CPU_INDEX"}
    for stage_name, index_arg in indexes.items():
        stage = dockerfile.stage(stage_name)
        variables = stage_args(dockerfile, stage)
        runs = [substitute(i.args, variables) for i in stage.all("RUN")]
        torch_installs = [r for r in runs if "torch==" in r]
        assert torch_installs, stage_name
        for run in torch_installs:
            assert f'"torch=={TORCH_VERSION}"' in run or f"torch=={TORCH_VERSION} " in run, run
            assert "--index-url" in run
        index = variables[index_arg]
        assert index.startswith("https://download.pytorch.org/whl/")
        assert any(index in run for run in torch_installs)
    assert re.search(r"/whl/cu\d+$", dockerfile.global_args["TORCH_CUDA_INDEX"])
    assert dockerfile.global_args["TORCH_CPU_INDEX"].endswith("/whl/cpu")
    # The image build and the project agree on the version.
    assert f"torch=={TORCH_VERSION}" in (REPO_ROOT / "constraints.txt").read_text().split()


def test_project_is_installed_with_the_constraints(dockerfile):
    for stage_name in ("builder-cpu", "builder-gpu"):
        runs = [i.args for i in dockerfile.stage(stage_name).all("RUN")]
        assert any(re.search(r"pip install -c constraints\.txt \.(\s|$)", run) for run in runs), stage_name


def test_no_model_weights_in_the_image(dockerfile):
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            sources = [part for part in instruction.args.split()[:-1] if not part.startswith("--")]
            for source in sources:
                assert not re.search(r"(^|/)(models?|\.videogen|weights)(/|$)|\.(safetensors|ckpt|pt|pth|bin|gguf|onnx)$", source), (
                    f"line {instruction.line}: {source} looks like model weights"
                )
        for instruction in stage.all("RUN"):
            assert not re.search(r"huggingface\.co|snapshot_download|from_pretrained|hf download|huggingface-cli", instruction.args), (
                f"line {instruction.line}: downloads a model at build time"
            )
        assert not stage.all("VOLUME"), "no VOLUME: /models is a mount point the pod must provide"
    for target in ("gpu", "cpu"):
        env = dockerfile.effective_env(target)
        assert env["VIDEOGEN_MODEL_CACHE"] == "/models"
        assert env["HF_HUB_OFFLINE"] == "1", "images never download weights at run time by accident"


def test_runtime_packages_come_from_debian(dockerfile):
    runtime = " ".join(i.args for i in dockerfile.stage("runtime").all("RUN"))
    assert "apt-get install" in runtime and "ffmpeg" in runtime
    cpu = " ".join(i.args for i in dockerfile.stage("cpu").all("RUN"))
    assert "openjdk-17-jre-headless" in cpu and "libpostgresql-jdbc-java" in cpu
    gpu = " ".join(i.args for i in dockerfile.stage("gpu").all("RUN"))
    assert "openjdk" not in gpu, "the GPU image has no use for Java"


def test_code_server_port_entrypoint_and_command(dockerfile):
    runtime = dockerfile.stage("runtime")
    assert [i.args for i in runtime.all("EXPOSE")] == ["3030"]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint.args == '["/usr/bin/tini", "--", "/usr/local/bin/videogen-entrypoint"]'
    (command,) = runtime.all("CMD")
    assert command.args.startswith('["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "definitions"')
    # The decision on HEALTHCHECK is explicit (see the Dockerfile comment).
    assert [i.args for i in runtime.all("HEALTHCHECK")] == ["NONE"]
    assert any("k8s/image/entrypoint.sh" in i.args for i in runtime.all("COPY"))
    assert any(i.args.split()[0] == "definitions.py" for i in runtime.all("COPY"))


def test_spark_settings_of_the_cpu_image_match_the_spark_conf(dockerfile):
    from videogen.config import setting_default
    from videogen.deploy.spark import IMAGE_S3A_JARS

    env = dockerfile.effective_env("cpu")
    assert env["VIDEOGEN_JDBC_JAR"] == setting_default("jdbc_jar")
    assert env["SPARK_HOME"].endswith("/site-packages/pyspark")
    args = dockerfile.global_args
    assert f"/opt/videogen/jars/hadoop-aws-{args['HADOOP_AWS_VERSION']}.jar" in IMAGE_S3A_JARS
    assert f"/opt/videogen/jars/bundle-{args['AWS_SDK_BUNDLE_VERSION']}.jar" in IMAGE_S3A_JARS
    # hadoop-aws must match the Hadoop client jars that pyspark ships.
    import pyspark

    jars = os.listdir(Path(pyspark.__file__).parent / "jars")
    assert f"hadoop-client-api-{args['HADOOP_AWS_VERSION']}.jar" in jars


def test_cpu_image_can_run_the_http_api(dockerfile):
    """k8s/api/api.yaml runs `videogen serve-api` (FastAPI on uvicorn) in the cpu image."""
    import fnmatch
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    # The command is the project's console script, installed into /opt/venv/bin (on PATH).
    assert project["project"]["scripts"]["videogen"] == "videogen.cli:main"
    assert "/opt/venv/bin" in dockerfile.effective_env("cpu")["PATH"]
    # The web stack is a direct, pinned dependency (not an accident of ray[serve]'s extras), at the
    # version constraints.txt resolves.
    constraints = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.split(";")[0].strip().partition("==")
            constraints[normalize(name)] = version.strip()
    direct = {normalize(r.name): r for r in map(Requirement, project["project"]["dependencies"])}
    for package in ("fastapi", "uvicorn"):
        assert package in direct, f"{package} is not a direct dependency in pyproject.toml"
        pins = [s.version for s in direct[package].specifier if s.operator == "=="]
        assert pins == [constraints[package]], f"{package}: pyproject {direct[package]} vs constraints {constraints.get(package)}"
    # The top-level package `api` is installed by `pip install .` and reaches the build context.
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch.fnmatch("api", pattern) for pattern in includes), f"`api` is not in packages.find: {includes}"
    assert not is_ignored("api/__init__.py")
    # Every third-party module the API's code imports (jwt, argon2, fastapi, ...) is installed by
    # `pip install .`: it belongs to a dependency of pyproject.toml or to one of theirs (not only to
    # the test extra or to the development environment).
    installed = dependency_closure(project["project"]["dependencies"])
    assert {"fastapi", "starlette", "uvicorn"} <= installed and not {"pytest", "moto"} & installed  # the walk itself
    first_party = {p.split("*")[0] for p in includes}
    providers = importlib.metadata.packages_distributions()
    for package in ("api", "videogen"):  # the API's own code and the library it runs on
        for module in sorted(third_party_imports(REPO_ROOT / package, first_party)):
            dists = {normalize(d) for d in providers.get(module, [])}
            assert dists & installed, f"{package}/ imports {module} ({dists or 'not installed'}), which `pip install .` does not install"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(requirements: list[str]) -> set[str]:
    """The distributions `pip install` brings for ``requirements`` (extras included), read from the
    metadata of the environment the tests run in (installed from the same constraints.txt)."""
    from packaging.requirements import Requirement

    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        key = (normalize(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                pending.append(sub)
    return {name for name, _ in seen}


def third_party_imports(package: Path, first_party: set[str]) -> set[str]:
    import ast
    import sys

    modules: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in first_party and m != "__future__"}


# --- .dockerignore -------------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex + "$")))
    return rules


def is_ignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/HEAD", ".videogen/storage/videos/1/video.mp4", "videogen/__pycache__/config.cpython-311.pyc",
     "tests/__pycache__/x.pyc", ".pytest_cache/v/cache", ".mypy_cache/x", ".env", "models/ltx-video/model.safetensors",
     "dagster_home/storage/run.db", "k8s/helm/values.yaml", "k8s/secrets/secrets.example.yaml", "tests/conftest.py",
     "videogen.egg-info/PKG-INFO", "spark-warehouse/x"],
)
def test_dockerignore_keeps_local_state_and_caches_out(path):
    assert is_ignored(path), path


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "constraints.txt", "README.md", "definitions.py", "videogen/config.py",
     "pipelines/generate_video.py", "resources/database.py", "sensors/job_requests.py", "k8s/image/entrypoint.sh",
     "api/__init__.py", "api/app.py"],
)
def test_dockerignore_keeps_what_the_image_needs(path):
    assert not is_ignored(path), path


# --- the entrypoint script -----------------------------------------------------------------------


def test_entrypoint_script_is_executable():
    assert ENTRYPOINT_SCRIPT.stat().st_mode & stat.S_IXUSR


def test_entrypoint_passes_ordinary_commands_through():
    result = subprocess.run([str(ENTRYPOINT_SCRIPT), "echo", "dagster", "api", "grpc"],
                            capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout.strip() == "dagster api grpc"


def test_entrypoint_starts_a_spark_executor_like_sparks_own_image(tmp_path):
    fake_java = tmp_path / "bin" / "java"
    fake_java.parent.mkdir()
    fake_java.write_text('#!/bin/sh\nprintf "%s\\n" "$PWD" "$@"\n')
    fake_java.chmod(0o755)
    env = {
        "PATH": f"{fake_java.parent}:{os.environ['PATH']}",
        "SPARK_HOME": "/opt/venv/lib/python3.11/site-packages/pyspark",
        "SPARK_WORK_DIR": str(tmp_path / "work"),
        "SPARK_JAVA_OPT_1": "-Dspark.driver.blockManager.port=7079",
        "SPARK_JAVA_OPT_0": "-Dspark.driver.port=7078",
        "SPARK_EXECUTOR_MEMORY": "2g",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.42.3.17:7078",
        "SPARK_EXECUTOR_ID": "1",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.42.5.9",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "videogen-kpi-exec-1",
    }
    result = subprocess.run([str(ENTRYPOINT_SCRIPT), "executor"], env=env, capture_output=True, text=True,
                            check=True, timeout=30)
    lines = result.stdout.splitlines()
    assert lines[0] == str(tmp_path / "work")  # a writable working directory for fetched jars
    assert lines[1:] == [
        "-Dspark.driver.port=7078", "-Dspark.driver.blockManager.port=7079",
        "-Xms2g", "-Xmx2g",
        "-cp", "/opt/venv/lib/python3.11/site-packages/pyspark/jars/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url", "spark://CoarseGrainedScheduler@10.42.3.17:7078",
        "--executor-id", "1", "--cores", "1", "--app-id", "spark-app-1", "--hostname", "10.42.5.9",
        "--resourceProfileId", "0", "--podName", "videogen-kpi-exec-1",
    ]
