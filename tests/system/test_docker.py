"""The container image for real: built with Docker from this checkout on a Debian minbase made
without a registry, run as a non-root user, holding exactly requirements.lock, and the pipeline
under -profile test,docker giving byte for byte what `virnucpro run` gives, for the bundled example
and a second input (gzipped FASTQ, a space in its name)."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import DATA, REPO
from nextflow_docker import (
    DockerDaemon,
    DockerUnavailable,
    build_image,
    docker,
    install_docker,
    make_base_image,
)
from nextflow_support import (
    CALIBRATED_TARGET_FDR,
    assert_same_outputs,
    fasta_records,
    make_calibration,
    read_trace,
    run_like_the_test_profile,
    run_pipeline,
)

# One worker holds the module's Docker daemon and image (pytest-xdist --dist loadgroup)
pytestmark = [pytest.mark.nextflow, pytest.mark.docker, pytest.mark.slow, pytest.mark.xdist_group("docker")]

IMAGE = "virnucpro-test:latest"


@pytest.fixture(scope="module")
def docker_image(tmp_path_factory):
    """The image, built once per test session and removed after the module's tests."""
    folder = tmp_path_factory.mktemp("docker")
    try:
        install_docker()
    except DockerUnavailable as reason:
        pytest.skip(f"Docker cannot be installed here: {reason}")
    daemon = DockerDaemon(folder)
    try:
        daemon.start()
        base_seconds = make_base_image(folder)
        build_seconds = build_image(REPO, IMAGE, folder / "build.log")
        print(f"docker: base image {base_seconds:.0f} s, pipeline image {build_seconds:.0f} s")
        yield IMAGE
    except DockerUnavailable as reason:
        pytest.fail(f"Docker is installed but does not work: {reason}")
    finally:
        # The pipeline image holds torch and its CUDA libraries (about 7 GB); the small base stays
        # for the next run. Only this test's own tag is removed.
        docker("rmi", "--force", IMAGE, timeout=300)
        daemon.stop()


def test_the_image_runs_as_a_non_root_user_with_writable_caches(docker_image):
    assert docker("run", "--rm", docker_image, "id", "-u").stdout.strip() != "0"
    # Nextflow runs containers as the launching user (-u uid:gid): any user id must be able to write
    # the caches of matplotlib, Hugging Face, triton and virnucpro
    check = (
        "import os, matplotlib; "
        "[open(os.path.join(os.environ[name], 'probe'), 'w').close() "
        "for name in ('MPLCONFIGDIR', 'HF_HOME', 'TRITON_CACHE_DIR', 'VIRNUCPRO_CACHE')]; "
        "print(matplotlib.get_cachedir())"
    )
    result = docker("run", "--rm", "-u", "4321:4321", docker_image, "python", "-c", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/var/cache/virnucpro/matplotlib"


def test_the_image_holds_exactly_the_locked_packages(docker_image):
    frozen = docker("run", "--rm", docker_image, "pip", "freeze", "--all", "--exclude-editable")
    assert frozen.returncode == 0, frozen.stderr
    installed = {
        line.lower()
        for line in frozen.stdout.splitlines()
        if not line.lower().startswith(("pip==", "virnucpro"))
    }
    locked = {
        line.strip().lower()
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert installed == locked
    version = docker("run", "--rm", docker_image, "virnucpro", "--version").stdout.strip()
    from virnucpro import __version__

    assert version == f"virnucpro {__version__}"


def test_torch_compile_works_inside_the_image(docker_image):
    """The image carries a C compiler and Python's headers: inductor builds and runs a CPU kernel,
    Triton's kernel launchers (C that includes Python.h, built with `cc`) compile, and the engine
    would take compiled FlexAttention for DNABERT-S on a GPU."""
    check = "\n".join(
        [
            "import os, subprocess, sysconfig, tempfile, torch",
            "from virnucpro.embedding.engine import can_compile_kernels",
            "x = torch.linspace(-3, 3, 101)",
            "compiled = torch.compile(lambda t: torch.nn.functional.gelu(t) * t.sin())",
            "assert torch.allclose(compiled(x), torch.nn.functional.gelu(x) * x.sin(), atol=1e-6)",
            "with tempfile.TemporaryDirectory() as tmp:",
            "    source = os.path.join(tmp, 'launcher.c')",
            "    open(source, 'w').write('#include <Python.h>\\nint f(void) { return PY_MAJOR_VERSION; }\\n')",
            "    include = sysconfig.get_paths()['include']",
            "    subprocess.run(['cc', '-shared', '-fPIC', '-I', include, source, '-o', source + '.so'], check=True)",
            "print('compiled', can_compile_kernels('cuda'), can_compile_kernels('cpu'))",
        ]
    )
    env = ["-e", "TORCHINDUCTOR_CACHE_DIR=/tmp/inductor"]
    result = docker("run", "--rm", "-u", "4321:4321", *env, docker_image, "python", "-c", check, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["compiled", "True", "True"]
    # What the compilers add to the image (docs/usage.md states it): their own layer's size.
    history = docker("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", docker_image).stdout
    layer = next(line for line in history.splitlines() if "python3-dev" in line)
    print(f"compiler layer: {layer.split(chr(9))[0]}")


def test_docker_profile_outputs_equal_virnucpro_run(docker_image, tmp_path, test_models, example_reference):
    """-profile test,docker on the bundled example and a second input in one run, with a
    calibration (a file the container sees only when it is staged); each sample's outputs byte for
    byte those of `virnucpro run` on the same file with the same settings."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "example.fa").write_bytes((DATA / "example.fa").read_bytes())
    records = fasta_records(DATA / "example.fa")[2:9]
    second = inputs / "second input.fq.gz"
    with gzip.open(second, "wt") as fastq:
        for header, sequence in records:
            bases = sequence.replace("\n", "")
            fastq.write(f"@{header}\n{bases}\n+\n{'I' * len(bases)}\n")
    calibration = make_calibration(example_reference, tmp_path / "labelled")
    launch = tmp_path / "launch"
    launch.mkdir()
    run_pipeline(
        *(
            "-profile",
            "test,docker",
            "--container",
            docker_image,
            "--input",
            f"{inputs}/*",
            "--outdir",
            "out",
            "--calibration",
            calibration,
            "--target_fdr",
            CALIBRATED_TARGET_FDR,
        ),
        cwd=launch,
    )
    outdir = launch / "out"
    options = ("--calibration", calibration, "--target-fdr", CALIBRATED_TARGET_FDR)
    for sample, reads in (("example", inputs / "example.fa"), ("second input", second)):
        expected = run_like_the_test_profile(reads, tmp_path / f"expected-{sample}", test_models, *options)
        assert_same_outputs(outdir / sample, expected)
    for sample in ("example", "second input"):
        run_info = json.loads((outdir / sample / "run.json").read_text())["nextflow"]
        assert run_info["container_engine"] == "docker"
        assert run_info["params"]["container"] == docker_image
    trace = read_trace(outdir)
    assert {row["status"] for row in trace} == {"COMPLETED"}
    for row in trace:
        wrapper = next((launch / "work").glob(f"{row['hash']}*/.command.run")).read_text()
        assert f" {docker_image} " in wrapper, row["name"]  # the task ran in the image
        assert "--gpus" not in wrapper, row["name"]  # --gpus 0: no GPU options
