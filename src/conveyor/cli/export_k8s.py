"""``conveyor export k8s|kserve``: a deployment as Kubernetes objects (one YAML file each) or as a KServe
InferenceService, from a running control plane (NAME) or from a Deployment file resolved against the local
registry (-f FILE); docs/operations.md, Kubernetes and KServe."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from conveyor.cli.client import CaOpt, UrlOpt, api_client
from conveyor.cli.output import err_console
from conveyor.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from conveyor.k8s import Options, Served

NameArg = Annotated[
    str | None,
    typer.Argument(
        help="A deployment of the control plane at --url; with -f, the one of the file to export."
    ),
]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--filename",
        "-f",
        help="A Deployment file, its models resolved against the local registry (CONVEYOR_HOME) instead of a "
        "control plane.",
    ),
]
NamespaceOpt = Annotated[str, typer.Option(help="Namespace of every object.")]
ImageOpt = Annotated[
    str | None,
    typer.Option(
        help="Image of the Conveyor containers (default: conveyor:VERSION, this package's version)."
    ),
]


def k8s(
    name: NameArg = None,
    filename: FileOpt = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the files into (created).")
    ] = Path("k8s"),
    namespace: NamespaceOpt = "conveyor",
    instance: Annotated[
        str, typer.Option(help="app.kubernetes.io/instance and the prefix of the shared objects' names.")
    ] = "conveyor",
    image: ImageOpt = None,
    secret_name: Annotated[
        str | None,
        typer.Option(
            "--secret-name",
            help="Read the settings (database-url, artifact-key, gateway-token, aws-*) from this existing "
            "Secret; default: write a Secret INSTANCE-settings with placeholder values to fill in.",
        ),
    ] = None,
    url: UrlOpt = None,
    ca: CaOpt = None,
) -> None:
    """Kubernetes objects for a deployment, one YAML file per object: the control plane and the gateway
    (Deployments, Services, NetworkPolicies, the home PersistentVolumeClaim, the settings Secret), and per
    model version the replicas' Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget and
    NetworkPolicy. Check them with `kubernetes-validate --strict`, apply them with `kubectl apply -f DIR`."""
    from conveyor.k8s import stack_objects
    from conveyor.k8s.files import write_objects

    options = _options(namespace, image, secret_name, instance)
    served = _served(name, filename, url)
    paths = write_objects(stack_objects(served, options), output)
    for path in paths:
        err_console.print(f"wrote {path}", highlight=False)


def kserve(
    name: NameArg = None,
    filename: FileOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    namespace: NamespaceOpt = "default",
    storage_uri: Annotated[
        str | None,
        typer.Option(
            "--storage-uri",
            help="Where the version's ONNX file lies as model.onnx (s3://, gs://, pvc://, https://); "
            "default: a folder beside the S3 artifact store (CONVEYOR_ARTIFACTS_URL), else a s3://CHANGE-ME "
            "placeholder.",
        ),
    ] = None,
    url: UrlOpt = None,
    ca: CaOpt = None,
) -> None:
    """A KServe InferenceService (serving.kserve.io/v1beta1) of a deployment's model version: the V2
    protocol, the ONNX model format, its replicas or autoscaling bounds and its resources."""
    from conveyor.k8s import inference_service
    from conveyor.k8s.files import to_yaml
    from conveyor.k8s.kserve import PLACEHOLDER_BUCKET

    options = _options(namespace, None, None, "conveyor")
    served = _served(name, filename, url)
    services = [inference_service(s, options, storage_uri) for s in served]
    for one, isvc in zip(served, services, strict=True):
        where = isvc["spec"]["predictor"]["model"]["storageUri"]
        err_console.print(
            f"{one.model.ref} (sha256 {one.model.sha256}) must lie at {where}/model.onnx"
            + (": a placeholder, pass --storage-uri" if where.startswith(PLACEHOLDER_BUCKET) else ""),
            highlight=False,
            soft_wrap=True,
        )
    text = "---\n".join(to_yaml(isvc) for isvc in services)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {output}", highlight=False)


def _options(namespace: str, image: str | None, secret_name: str | None, instance: str) -> Options:
    from conveyor.k8s import Options
    from conveyor.k8s.names import DEFAULT_IMAGE
    from conveyor.settings import get_settings
    from conveyor.spec.resources import name_problem
    from conveyor.targets.kubernetes import artifact_source

    for what, value in (("namespace", namespace), ("instance", instance), ("secret name", secret_name)):
        if value is not None and (problem := name_problem(value, what)):
            raise InvalidInput(problem)
    return Options(
        namespace=namespace,
        instance=instance,
        image=image or DEFAULT_IMAGE,
        secret_name=secret_name,
        artifacts=artifact_source(get_settings()),
    )


def _served(name: str | None, filename: Path | None, url: str | None) -> list[Served]:
    """The deployments to export with their resolved model versions."""
    if filename is not None:
        return _from_file(filename, name)
    if name is None:
        raise InvalidInput("name a deployment of the control plane, or give a Deployment file with -f")
    return [_from_control_plane(name, url)]


def _from_file(filename: Path, name: str | None) -> list[Served]:
    import conveyor
    from conveyor.k8s import Served
    from conveyor.spec import Deployment, load_file
    from conveyor.targets.kubernetes import model_version

    deployments = [r for r in load_file(str(filename)) if isinstance(r, Deployment)]
    if name is not None:
        deployments = [d for d in deployments if d.metadata.name == name]
        if not deployments:
            raise NotFound(f"no Deployment {name!r} in {filename}")
    if not deployments:
        raise InvalidInput(f"{filename} holds no Deployment")
    with conveyor.open_registry() as registry:
        return [Served(d, model_version(registry.resolve(d.spec.model))) for d in deployments]


def _from_control_plane(name: str, url: str | None) -> Served:
    from conveyor.k8s import ModelVersion, Served
    from conveyor.spec import Deployment

    with api_client(url) as api:
        found = api.get(f"/deployments/{quote(name, safe='')}")
        model = str(found["model"])
        model_name, _, version = model.rpartition(":")
        versions = api.get(f"/models/{quote(model_name, safe='')}")["versions"]
    info = next((v for v in versions if str(v["version"]) == version), None)
    if info is None:
        raise NotFound(f"deployment {name!r} serves {model}, which the control plane no longer has")
    resolved = ModelVersion(model_name, int(version), info["sha256"], info["size_bytes"])
    return Served(Deployment.model_validate(found["spec"]), resolved)
