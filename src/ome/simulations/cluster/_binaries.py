"""Where the control-plane binaries are: $OME_CONTROLPLANE_BIN, else the build cache.

`hack/build-controlplane.sh` builds them from the Go module proxy into
`<repo>/.cache/controlplane/bin` (or `$OME_CONTROLPLANE_CACHE/bin`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ome.domain import OmeError

BIN_ENV = "OME_CONTROLPLANE_BIN"
CACHE_ENV = "OME_CONTROLPLANE_CACHE"
BUILD_COMMAND = "bash hack/build-controlplane.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# The fast stages shipped in the kwok module (kustomize/stage), copied next to the binary by the build.
KWOK_STAGE_FILES = ("node/fast/node-initialize.yaml", "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml",
                    "pod/fast/pod-delete.yaml")


class MissingBinaries(OmeError, FileNotFoundError):
    """A control-plane binary or kwok's stage files are not where they were looked for."""


@dataclass(frozen=True, slots=True)
class Binaries:
    directory: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: tuple[Path, ...]  # node-initialize, pod-ready, pod-complete, pod-delete


def _repo_root() -> Path | None:
    """The checkout this package runs from (editable install), if any."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "hack" / "build-controlplane.sh").is_file():
            return parent
    return None


def candidate_dirs() -> list[Path]:
    """Folders searched, in order."""
    dirs: list[Path] = []
    if os.environ.get(BIN_ENV):
        return [Path(os.environ[BIN_ENV])]
    if os.environ.get(CACHE_ENV):
        dirs.append(Path(os.environ[CACHE_ENV]) / "bin")
    root = _repo_root()
    if root is not None:
        dirs.append(root / ".cache" / "controlplane" / "bin")
    dirs.append(Path.cwd() / ".cache" / "controlplane" / "bin")
    return list(dict.fromkeys(d.resolve() for d in dirs))


def _missing(directory: Path) -> list[str]:
    missing = [c for c in COMPONENTS if not os.access(directory / c, os.X_OK)]
    missing += [f"kwok-stages/{f}" for f in KWOK_STAGE_FILES if not (directory / "kwok-stages" / f).is_file()]
    return missing


def find_binaries(directory: str | os.PathLike[str] | None = None) -> Binaries:
    """The first folder holding every component; MissingBinaries says what lacks and how to build it."""
    dirs = [Path(directory).resolve()] if directory else candidate_dirs()
    report = []
    for d in dirs:
        missing = _missing(d)
        if not missing:
            return Binaries(
                d, d / "etcd", d / "kube-apiserver", d / "kube-controller-manager", d / "kube-scheduler", d / "kwok",
                tuple(d / "kwok-stages" / f for f in KWOK_STAGE_FILES),
            )
        report.append(f"  {d}: missing {', '.join(missing)}")
    go = "" if shutil.which("go") else " (needs Go >= 1.26 on PATH: `go` was not found)"
    raise MissingBinaries(
        "control-plane binaries not found:\n" + "\n".join(report)
        + f"\nbuild them from the repository root with: {BUILD_COMMAND}{go}"
        + f"\nor point ${BIN_ENV} at a folder holding {', '.join(COMPONENTS)} and kwok-stages/"
    )


def go_toolchain() -> str | None:
    """Path of `go`, or None."""
    return shutil.which("go")
